package app

import (
	"context"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/store/postgres"
)

// The PostgreSQL engine is always linked in: --database postgres://... opens it.
func init() {
	openPostgres = func(ctx context.Context, url string) (gatehouse.Store, error) {
		return postgres.Open(ctx, url)
	}
}
