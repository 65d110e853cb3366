# Cross-checks of the root module's inputs and the values derived from them.
# No resources and no provider, so every rule here is tested offline by
# tests/settings.tftest.hcl.

locals {
  requirements_set = length([for k, v in var.instance_requirements : k if v != null]) > 0

  # x86_64 only: with no cpu_manufacturers given, Auto Scaling would also
  # pick Graviton types, which cannot run the binary.
  instance_requirements = local.requirements_set ? merge(var.instance_requirements, {
    cpu_manufacturers = var.instance_requirements.cpu_manufacturers == null ? ["intel", "amd"] : var.instance_requirements.cpu_manufacturers
  }) : null

  byo_profile_given = (var.iam_instance_profile_arn == null ? 0 : 1) + (var.iam_instance_profile_name == null ? 0 : 1)
}
