"""Imported at start-up by every Python in the emulated arm64 environment (tests/arm64/emulated.sh puts this
directory on PYTHONPATH); never on a real arm64 host, in the image or in the package.

Under QEMU, PyPI's aarch64 torch 2.13 computes wrong float32 batched matmuls through oneDNN (mkldnn): q @ k^T
for attention-sized tensors is off by up to 7 against float64, with or without threads, and right with
`torch.backends.mkldnn.enabled = False`. The PyTorch reference that `smoke --reference` compares vLLM with
would then disagree with vLLM for reasons that have nothing to do with the checkpoint. So torch's oneDNN
dispatch is switched off as soon as torch is imported. vLLM's own kernels (its oneDNN build, KleidiAI) do not
go through this switch.
"""

import importlib.abc
import importlib.util
import sys


class _AfterTorchImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "torch":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("torch")
        exec_module = spec.loader.exec_module

        def exec_then_disable_mkldnn(module):
            exec_module(module)
            module.backends.mkldnn.enabled = False

        spec.loader.exec_module = exec_then_disable_mkldnn
        return spec


sys.meta_path.insert(0, _AfterTorchImport())
