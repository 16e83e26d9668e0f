"""The control plane: admin API, configuration publication to gateways, node registry."""
