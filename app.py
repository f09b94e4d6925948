"""Pocket Studio: ``python app.py [--host 127.0.0.1] [--port 7860] [--share]`` opens the studio."""

from app.studio import main

if __name__ == "__main__":
    main()
