locals {
  # The cloud-config template and the unit live beside the agent, not in this
  # module; Terraform fetches whole repositories, so these paths resolve for
  # git sources too.
  repo_root = "${path.module}/../../.."

  exec = var.processors.exec == null ? null : {
    for k, v in {
      argv             = var.processors.exec.argv
      timeout_seconds  = var.processors.exec.timeout_seconds
      max_output_bytes = var.processors.exec.max_output_bytes
    } : k => v if v != null
  }

  # Only keys the agent knows (it rejects unknown ones); null means "agent
  # default" and is left out rather than written as null.
  config = {
    for k, v in {
      queue         = var.queue
      inputs        = var.inputs
      results       = var.results
      concurrency   = var.concurrency
      lease_seconds = var.lease_seconds
      tags          = var.tags
      spot = {
        poll_seconds         = var.spot.poll_seconds
        on_rebalance         = var.spot.on_rebalance
        drain_margin_seconds = var.spot.drain_margin_seconds
      }
      processors   = local.exec == null ? null : { exec = local.exec }
      publish_tags = var.publish_tags
    } : k => v if v != null
  }

  # yamlencode quotes whatever needs quoting, so any tag value is safe.
  agent_config = yamlencode(local.config)

  install_argv = [
    "/usr/local/sbin/rangefleet-install",
    "--url", var.agent_url,
    "--sha256", var.agent_sha256,
    "--dest", "/usr/local/bin/rangefleet",
    "--unit-src", "/usr/local/share/rangefleet/rangefleet-agent.service",
    "--catalog-src", "/usr/local/share/rangefleet/rangefleet.catalog",
  ]

  # The shipper's config (agent/systemd/journal-cloudwatch.py reads it); the script
  # and its unit come out of the binary (`rangefleet journal-shipper install`).
  journal_config = var.journal_cloudwatch.log_group == null ? null : join("\n", [
    "[cloudwatch]",
    "log_group = ${var.journal_cloudwatch.log_group}",
    "log_stream = {instance_id}",
    "region = ${var.journal_cloudwatch.region}",
    "",
  ])
  journal_argv = ["sh", "-c", "/usr/local/bin/rangefleet journal-shipper install && systemctl daemon-reload && systemctl enable --now --no-block rangefleet-journal-cloudwatch.service"]

  user_data = templatefile("${local.repo_root}/cloud-init/cloud-config.yaml.tftpl", {
    agent_config = local.agent_config
    # gz+b64 in the cloud-config: the plain text would not fit in user-data.
    unit_base64gzip        = base64gzip(file("${local.repo_root}/agent/systemd/rangefleet-agent.service"))
    catalog_base64gzip     = base64gzip(file("${local.repo_root}/agent/systemd/rangefleet.catalog"))
    failed_unit_base64gzip = base64gzip(file("${local.repo_root}/agent/systemd/rangefleet-agent-failed.service"))
    install_script         = file("${local.repo_root}/cloud-init/install-agent.sh")
    install_argv           = local.install_argv
    journal_config         = local.journal_config
    journal_argv           = local.journal_argv
  })

  user_data_base64gzip = base64gzip(local.user_data)

  # Terraform's length() counts characters; count bytes through base64.
  user_data_b64        = base64encode(local.user_data)
  user_data_bytes      = length(local.user_data_b64) / 4 * 3 - length(regex("=*$", local.user_data_b64))
  user_data_gzip_bytes = length(local.user_data_base64gzip) / 4 * 3 - length(regex("=*$", local.user_data_base64gzip))
}
