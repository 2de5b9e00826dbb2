"""A3 Studio: the Gradio demo (the Hugging Face Spaces entry point). The app lives in app/."""
try:  # ZeroGPU: the `spaces` package must be imported before anything imports torch
    import spaces  # noqa: F401
except ImportError:
    pass

from app.ui import build_demo, launch_kwargs

demo = build_demo()

if __name__ == "__main__":
    demo.launch(**launch_kwargs())
