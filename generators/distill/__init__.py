"""Few-step and smaller students from a text-to-image teacher: SnapGen's multi-level KD and adversarial guidance,
SnapGen++'s K-DMD (``train_distill``), on losses (``losses``), feature taps (``features``) and one view of any
teacher as a flow-matching velocity field (``teacher``)."""
