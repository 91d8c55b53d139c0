"""Model providers. `lwfsm.provider.adapter` calls models through LiteLLM (the `litellm` extra);
importing this package alone loads nothing heavy."""
