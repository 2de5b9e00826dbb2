"""What A3 is compared with, on the same base.

    ar         the base itself, left to right: exact-length generate, left-context log p
    diffusion  the masked-diffusion adaptation of the base (DiffuGPT-style): training loss, unmasking
"""
