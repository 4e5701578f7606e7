//go:build tools

// Package coredns names the command built from this module, so `go mod tidy` keeps it.
package coredns

import (
	_ "github.com/coredns/coredns"
)
