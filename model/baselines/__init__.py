"""Systems A3 is compared with: the masked-diffusion adaptation of the same base."""
