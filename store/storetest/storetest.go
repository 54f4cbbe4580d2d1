package storetest

import (
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

func Run(t *testing.T, open func(t *testing.T) gatehouse.Store) {}
