package app

import (
	"context"
	"regexp"

	"github.com/google/uuid"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/token"
)

// OwnerNameRE is the CLI's rule for organization names (and we use it for user names).
var OwnerNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9-_]{1,38}[a-zA-Z0-9]$`)

// ValidOwnerName checks an organization or user name.
func ValidOwnerName(kind, name string) error {
	if !OwnerNameRE.MatchString(name) {
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid %s name %q: 3-40 letters, digits, '-' or '_', starting and ending with a letter or digit", kind, name)
	}
	return nil
}

// NewToken makes a token value and its metadata (the caller fills in the rest).
func NewToken(kind gatehouse.TokenKind) (string, *gatehouse.Token, error) {
	v, err := token.New(token.Kind(kind))
	if err != nil {
		return "", nil, err
	}
	return v, &gatehouse.Token{ID: uuid.NewString(), Kind: kind, Digest: token.Digest(v)}, nil
}

// Bootstrap creates the first organization and its first admin, a site administrator, on
// an empty store, and returns the admin's personal access token. It refuses a store that
// already has users and changes nothing then.
func Bootstrap(ctx context.Context, store gatehouse.Store, orgName, adminName string) (string, error) {
	if err := ValidOwnerName("organization", orgName); err != nil {
		return "", err
	}
	if err := ValidOwnerName("user", adminName); err != nil {
		return "", err
	}
	value, tk, err := NewToken(gatehouse.TokenPersonal)
	if err != nil {
		return "", err
	}
	err = store.Update(ctx, func(tx gatehouse.Tx) error {
		n, err := tx.CountUsers()
		if err != nil {
			return err
		}
		if n > 0 {
			return gatehouse.Errorf(gatehouse.ECONFLICT, "already bootstrapped: this data store has users; nothing was changed")
		}
		org := &gatehouse.Org{Name: orgName, Settings: gatehouse.DefaultOrgSettings()}
		if err := tx.CreateOrg(org); err != nil {
			return err
		}
		u := &gatehouse.User{Name: adminName, SiteAdmin: true}
		if err := tx.CreateUser(u); err != nil {
			return err
		}
		if err := tx.PutMember(org.ID, u.ID, gatehouse.RoleAdmin); err != nil {
			return err
		}
		tk.Name, tk.Description, tk.UserID, tk.CreatedBy = "bootstrap", "created by gatehouse bootstrap", u.ID, "gatehouse bootstrap"
		if err := tx.CreateToken(tk); err != nil {
			return err
		}
		return tx.AppendAudit(&gatehouse.AuditEvent{
			OrgID: org.ID, OrgName: org.Name, ActorKind: "system", ActorName: "gatehouse bootstrap",
			Action: "site:bootstrap", Target: org.Name, Outcome: gatehouse.OutcomeSuccess,
			Details: map[string]string{"admin": adminName, "token_id": tk.ID},
		})
	})
	if err != nil {
		return "", err
	}
	return value, nil
}
