// Package compat pins the franz-go version whose pkg/kgo integration tests
// run.sh executes against a broker (see TESTS.md). It has no code of its own:
// the blank import keeps github.com/twmb/franz-go in go.mod / go.sum so that
// `go mod download` fetches exactly the pinned, checksummed release.
package compat

import _ "github.com/twmb/franz-go/pkg/kgo"
