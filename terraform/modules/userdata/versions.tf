terraform {
  # Provider-free on purpose: renders text only, so `terraform test` runs offline.
  # 1.6 for `terraform test`; optional() defaults need 1.3.
  required_version = ">= 1.6"
}
