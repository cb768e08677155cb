"""mlloop.runtime: what every training/evaluation script shares, so versions differ only by their change.

Imported by the scripts (01_data_pipeline.py, 02_train_*.py, 03_eval.py), never by the CLI: this
package may import torch, lightning and timm. Submodules are imported explicitly
(``from mlloop.runtime import training``); nothing heavy happens at ``import mlloop.runtime``.
"""
