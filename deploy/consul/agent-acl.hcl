# ACL settings for the Consul agents leaseway talks to (servers and clients):
# default deny, so a token must hold leaseway-policy.hcl's rules. Merge into
# the agent's configuration; checked with `consul validate`.
acl {
  enabled                  = true
  default_policy           = "deny"
  enable_token_persistence = true
}
