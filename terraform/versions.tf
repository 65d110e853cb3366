terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # instance_refresh.preferences.alarm_specification (added in 5.4x; 5.54
      # is a release known to have it).
      version = ">= 5.54"
    }
  }
}
