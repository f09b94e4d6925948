"""Rule-based evaluation of generated images (ShapesEval, a GenEval analogue)."""
