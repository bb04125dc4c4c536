"""effir-surgery: turn decoder LLMs into fast dense retrievers (EffiR, arXiv 2512.20612).

Pipeline: load -> analyze -> plan -> surgery -> save/reload -> finetune -> evaluate -> push.
"""

__version__ = "0.1.0"
