# Offline tests of the user-data module: `terraform init -backend=false &&
# terraform test` in terraform/modules/userdata (no provider needed).

variables {
  queue        = "https://sqs.us-east-1.amazonaws.com/123456789012/trips-jobs"
  inputs       = ["s3://trips-data/trips/", "s3://trips-archive/2016/"]
  results      = "s3://trips-data/results/run-42/"
  agent_url    = "https://example-artifacts.s3.amazonaws.com/rangefleet/0.1.0/rangefleet-x86_64-linux"
  agent_sha256 = "0f343b0931126a20f133d67c2b018a3b4f2c3b8c1e8d6a2d0f9b6ad1e2c3d4e5"
  concurrency  = 8
  tags = {
    team    = "data"
    Name    = "worker-{instance_id}"
    project = "trips: 2016"
  }
  spot = {
    poll_seconds         = 5
    on_rebalance         = "drain"
    drain_margin_seconds = 20
  }
  processors = {
    exec = {
      argv             = ["/usr/local/bin/my-step", "--json"]
      timeout_seconds  = 600
      max_output_bytes = 1048576
    }
  }
  publish_tags = true
}

run "realistic_config_fits_in_user_data" {
  command = apply

  assert {
    condition     = output.user_data_bytes < 16384
    error_message = "user-data is ${output.user_data_bytes} bytes, over EC2's 16384."
  }
  assert {
    condition     = startswith(output.user_data, "#cloud-config\n")
    error_message = "user-data must start with #cloud-config."
  }
  assert {
    condition     = length(output.user_data) == output.user_data_bytes
    error_message = "ASCII user-data: byte count must equal character count."
  }
}

run "gzip_form_is_base64_and_smaller" {
  command = apply

  assert {
    condition     = can(regex("^[A-Za-z0-9+/]+={0,2}$", output.user_data_base64gzip)) && length(output.user_data_base64gzip) % 4 == 0
    error_message = "user_data_base64gzip is not base64."
  }
  assert {
    # gzip magic 1f 8b 08 encodes as "H4sI".
    condition     = startswith(output.user_data_base64gzip, "H4sI")
    error_message = "user_data_base64gzip does not hold gzip data."
  }
  assert {
    condition     = output.user_data_gzip_bytes < output.user_data_bytes
    error_message = "gzip form should be smaller than the plain form."
  }
}

run "config_round_trips_through_cloud_config" {
  command = apply

  assert {
    # The agent reads the write_files entry for /etc/rangefleet/agent.yaml.
    condition = yamldecode(one([
      for f in yamldecode(output.user_data).write_files : f.content if f.path == "/etc/rangefleet/agent.yaml"
    ])) == yamldecode(output.agent_config)
    error_message = "the agent.yaml entry in user-data differs from agent_config."
  }
  assert {
    condition     = yamldecode(output.agent_config).queue == var.queue && tolist(yamldecode(output.agent_config).inputs) == var.inputs && yamldecode(output.agent_config).results == var.results
    error_message = "queue, inputs or results did not survive rendering."
  }
  assert {
    condition     = yamldecode(output.agent_config).concurrency == 8 && yamldecode(output.agent_config).processors.exec.argv == ["/usr/local/bin/my-step", "--json"]
    error_message = "concurrency or processors.exec did not survive rendering."
  }
  assert {
    condition     = toset(keys(yamldecode(output.agent_config))) == toset(["queue", "inputs", "results", "concurrency", "lease_seconds", "tags", "spot", "processors", "publish_tags"])
    error_message = "agent.yaml must hold exactly the config keys the agent knows."
  }
}

run "runcmd_installs_with_pinned_checksum" {
  command = apply

  assert {
    condition     = yamldecode(output.user_data).runcmd[0] == ["/usr/local/sbin/rangefleet-install", "--url", var.agent_url, "--sha256", var.agent_sha256, "--dest", "/usr/local/bin/rangefleet", "--unit-src", "/usr/local/share/rangefleet/rangefleet-agent.service", "--catalog-src", "/usr/local/share/rangefleet/rangefleet.catalog"]
    error_message = "runcmd must call the installer with the URL and sha256."
  }
  assert {
    condition     = strcontains(one([for f in yamldecode(output.user_data).write_files : f.content if f.path == "/usr/local/sbin/rangefleet-install"]), "enable --now --no-block")
    error_message = "the installer must start the unit with --no-block."
  }
}

run "journal_catalog_is_installed_as_written" {
  command = apply

  assert {
    # Byte for byte: journalctl -x shows this text for the agent's MESSAGE_IDs.
    condition = one([
      for f in yamldecode(output.user_data).write_files : f if f.path == "/usr/local/share/rangefleet/rangefleet.catalog"
    ]) == { path = "/usr/local/share/rangefleet/rangefleet.catalog", owner = "root:root", permissions = "0644", encoding = "gz+b64", content = base64gzip(file("${path.module}/../../../agent/systemd/rangefleet.catalog")) }
    error_message = "the catalog entry in user-data differs from agent/systemd/rangefleet.catalog."
  }
  assert {
    condition     = strcontains(one([for f in yamldecode(output.user_data).write_files : f.content if f.path == "/usr/local/sbin/rangefleet-install"]), "journalctl --update-catalog")
    error_message = "the installer must rebuild the journal catalog."
  }
}

run "awkward_tag_values_survive" {
  command = apply

  variables {
    tags = {
      colon   = "a: b"
      hash    = "x # not a comment"
      quotes  = "she said \"hi\" and 'bye'"
      boolish = "true"
      numish  = "0123"
      nullish = "null"
      empty   = ""
      lead    = "- dash, {brace} [bracket] *star &amp !bang %pct @at `tick`"
      "k:e_y" = "{instance_id}"
    }
  }

  assert {
    condition     = tomap(yamldecode(output.agent_config).tags) == var.tags
    error_message = "tag values changed in agent_config."
  }
  assert {
    condition = tomap(yamldecode(one([
      for f in yamldecode(output.user_data).write_files : f.content if f.path == "/etc/rangefleet/agent.yaml"
    ])).tags) == var.tags
    error_message = "tag values changed inside the cloud-config."
  }
}

run "defaults_are_left_to_the_agent" {
  command = apply

  variables {
    concurrency  = null
    processors   = {}
    spot         = {}
    tags         = {}
    publish_tags = false
  }

  assert {
    condition     = !contains(keys(yamldecode(output.agent_config)), "concurrency") && !contains(keys(yamldecode(output.agent_config)), "processors")
    error_message = "null concurrency and absent exec must be left out of agent.yaml."
  }
  assert {
    condition     = yamldecode(output.agent_config).spot == { poll_seconds = 5, on_rebalance = "stop-leasing", drain_margin_seconds = 20 }
    error_message = "spot defaults differ from docs/architecture.md#defaults."
  }
  assert {
    condition     = yamldecode(output.agent_config).lease_seconds == 300
    error_message = "lease_seconds default must be 300."
  }
}

run "sqlite_and_file_urls_accepted" {
  command = apply

  variables {
    queue   = "sqlite:///var/lib/rangefleet/queue.db"
    inputs  = ["file:///srv/trips/"]
    results = "file:///srv/results/"
  }

  assert {
    condition     = yamldecode(output.agent_config).queue == "sqlite:///var/lib/rangefleet/queue.db"
    error_message = "sqlite queue URL did not survive."
  }
}

run "exec_with_argv_only_keeps_agent_defaults" {
  command = apply

  variables {
    processors = { exec = { argv = ["/usr/local/bin/my-step"] } }
  }

  assert {
    condition     = keys(yamldecode(output.agent_config).processors.exec) == ["argv"]
    error_message = "unset exec fields must be left out of agent.yaml."
  }
}

run "relative_exec_argv_rejected" {
  command = plan

  variables {
    processors = { exec = { argv = ["my-step"] } }
  }

  expect_failures = [var.processors]
}

run "bad_sha256_rejected" {
  command = plan

  variables {
    agent_sha256 = "0f343b0931126a20f133d67c2b018a3b4f2c3b8c1e8d6a2d0f9b6ad1e2c3d4e"
  }

  expect_failures = [var.agent_sha256]
}

run "uppercase_or_non_hex_sha256_rejected" {
  command = plan

  variables {
    agent_sha256 = "ZZ343b0931126a20f133d67c2b018a3b4f2c3b8c1e8d6a2d0f9b6ad1e2c3d4e5"
  }

  expect_failures = [var.agent_sha256]
}

run "empty_queue_rejected" {
  command = plan

  variables {
    queue = ""
  }

  expect_failures = [var.queue]
}

run "queue_must_be_a_url" {
  command = plan

  variables {
    queue = "trips-jobs"
  }

  expect_failures = [var.queue]
}

run "bad_on_rebalance_rejected" {
  command = plan

  variables {
    spot = { on_rebalance = "panic" }
  }

  expect_failures = [var.spot]
}

run "reserved_and_bad_tag_keys_rejected" {
  command = plan

  variables {
    tags = { "aws:owner" = "x", "has space" = "y" }
  }

  expect_failures = [var.tags]
}

run "too_many_tags_rejected" {
  command = plan

  variables {
    tags = { for i in range(51) : "k${i}" => "v" }
  }

  expect_failures = [var.tags]
}

run "long_tag_value_rejected" {
  command = plan

  variables {
    tags = { team = join("", [for i in range(257) : "x"]) }
  }

  expect_failures = [var.tags]
}

run "inputs_must_be_s3_or_file" {
  command = plan

  variables {
    inputs = ["https://example.com/data/"]
  }

  expect_failures = [var.inputs]
}

run "agent_url_must_be_https_or_s3" {
  command = plan

  variables {
    agent_url = "http://example.com/rangefleet"
  }

  expect_failures = [var.agent_url]
}

run "no_journal_shipper_by_default" {
  command = apply

  assert {
    condition     = !strcontains(output.user_data, "journal-cloudwatch") && !strcontains(output.user_data, "packages:")
    error_message = "the journal shipper must be off unless journal_cloudwatch is set."
  }
}

run "journal_shipper_config_and_start" {
  command = apply

  variables {
    journal_cloudwatch = { log_group = "/rangefleet/trips", region = "eu-west-1" }
  }

  assert {
    condition     = output.user_data_bytes < 16384
    error_message = "with the journal shipper, user-data is ${output.user_data_bytes} bytes, over EC2's 16384."
  }
  assert {
    condition = one([
      for f in yamldecode(output.user_data).write_files : f.content
      if f.path == "/etc/rangefleet/journal-cloudwatch.ini"
    ]) == "[cloudwatch]\nlog_group = /rangefleet/trips\nlog_stream = {instance_id}\nregion = eu-west-1\n"
    error_message = "the shipper's config is not as written."
  }
  assert {
    condition     = yamldecode(output.user_data).packages == ["python3-botocore"]
    error_message = "python3-botocore must be installed for the shipper."
  }
  assert {
    # After the agent's install (which puts the binary in place), not before.
    condition     = length(yamldecode(output.user_data).runcmd) == 2 && strcontains(yamldecode(output.user_data).runcmd[1][2], "rangefleet journal-shipper install && systemctl daemon-reload && systemctl enable --now --no-block rangefleet-journal-cloudwatch.service")
    error_message = "runcmd must install and start the shipper after the agent."
  }
}

run "journal_shipper_bad_group_rejected" {
  command = plan

  variables {
    journal_cloudwatch = { log_group = "trips logs", region = "us-east-1" }
  }

  expect_failures = [var.journal_cloudwatch]
}

run "journal_shipper_needs_a_region" {
  command = plan

  variables {
    journal_cloudwatch = { log_group = "/rangefleet/trips" }
  }

  expect_failures = [var.journal_cloudwatch]
}
