"""The A3 Studio Gradio app (see ui.py). `app.demo` builds the page on first access, so
`gradio app.py` (reload mode, which imports this package under the name `app`) finds it too."""


def __getattr__(name):
    if name == "demo":
        from .ui import build_demo
        globals()["demo"] = build_demo()
        return globals()["demo"]
    raise AttributeError(f"module 'app' has no attribute {name!r}")
