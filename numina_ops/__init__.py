"""NUMINA as plain tensor code: prompt -> tokens -> capture -> layout -> refine -> bias.

No ComfyUI import anywhere in this package, so every step can be tested and benchmarked alone.
"""
