# Consul ACL policy for leaseway: the least it needs. Replace "myapp" with
# your --service and "myapp/" with the folder of your --lease-key.
#
#   consul acl policy create -name leaseway-myapp -rules @deploy/consul/leaseway-policy.hcl
#   consul acl token create -policy-name leaseway-myapp -description "leaseway (myapp)"
#   # hand the token over as a file: CONSUL_HTTP_TOKEN_FILE=/etc/leaseway/consul-token
#
# tests/integration/ops_deploy_files.sh creates this policy on an ACL-enabled
# (default deny) Consul, runs leaseway with a token holding only it, and checks
# that it registers, takes the lease, shows the cluster on its status page and
# hands off.

# The lease: watched with blocking reads, taken with ?acquire=<session>,
# given back with ?release=. Only under the app's folder.
key_prefix "myapp/" {
  policy = "write"
}

# Sessions: created on this machine's Consul node, renewed, destroyed. Node
# names are not known in advance on Fly or in autoscaling groups, hence the
# prefix; pin it to `session "<node>"` where they are.
session_prefix "" {
  policy = "write"
}

# The service entry: register, update the primary/replica tag and Meta, feed
# the alive/ready TTL checks, deregister on shutdown.
service "myapp" {
  policy = "write"
}

# Read-only, for the status page (GET / and /cluster) and `leaseway status`:
# Consul hides health entries on nodes the token cannot read.
node_prefix "" {
  policy = "read"
}

# Not needed: agent read (leaseway uses only the agent's service and check
# endpoints, which service write covers), operator, acl, keyring, and any
# write outside the lease folder.
#
# Watching a lease that LiteFS holds (Mode A in deploy/litefs.yml,
# --candidate=false): leaseway only reads the key, so
#   key_prefix "epic-stack-litefs/" { policy = "read" }
# is enough for it; LiteFS's own token needs write there and session write.
