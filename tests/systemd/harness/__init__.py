"""The real-systemd harness: a cached Debian root, systemd as PID 1 in namespaces,
the agent installed as cloud-init installs it, and test doubles on loopback."""
