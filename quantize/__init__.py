"""vllm-arm-int4: quantize Hugging Face causal LMs to W4A8-dynamic for vLLM on Arm CPUs."""

__version__ = "0.1.0"
