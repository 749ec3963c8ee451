# A Consul service definition for leaseway instances that do not register
# themselves (--register=false): e.g. when the service is managed by
# configuration management, or when Consul runs as a client agent that should
# own the registration. Put it in the agent's config dir (-config-dir) on each
# machine, with this machine's ID and address. Checked with `consul validate`.
#
# Without leaseway's own registration there are no primary/replica tags and no
# alive/ready TTL checks; the HTTP check below on the admin listener's /health
# (200 only while the gate is open) takes the place of `ready`. Prefer
# --register (the default with --lease consul) where you can: its session is
# bound to the 3 s alive check, which is what makes failover fast.

service {
  id      = "app-1"
  name    = "myapp"
  port    = 8080
  address = "10.0.0.11"
  tags    = ["leaseway"]
  meta = {
    region = "fra"
  }

  check {
    id       = "leaseway:app-1:health"
    name     = "leaseway gate open (admin /health)"
    http     = "http://127.0.0.1:9901/health"
    method   = "GET"
    interval = "2s"
    timeout  = "1s"
    # a machine gone for good leaves the catalog by itself
    deregister_critical_service_after = "10m"
  }
}
