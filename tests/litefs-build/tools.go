//go:build tools

// Package tools pins LiteFS for tests/setup.sh, which builds
// github.com/superfly/litefs/cmd/litefs inside this module.
package tools

import _ "github.com/superfly/litefs/cmd/litefs"
