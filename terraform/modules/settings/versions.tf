terraform {
  # Provider-free on purpose, like ../userdata: `terraform test` runs offline.
  required_version = ">= 1.6"
}
