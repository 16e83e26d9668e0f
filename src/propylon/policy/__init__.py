"""Pure enforcement math: policy resolution and combination, rate limits, quotas, access rights."""
