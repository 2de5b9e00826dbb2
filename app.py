"""A3 Studio: the Gradio demo (the Hugging Face Spaces entry point). The app lives in app/."""
from app.ui import build_demo, launch_kwargs

demo = build_demo()

if __name__ == "__main__":
    demo.launch(**launch_kwargs())
