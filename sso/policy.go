package sso

import (
	"fmt"
	"slices"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// policy is an organization's sign-in policy (its OrgSSO, or the defaults without one:
// every method accepted, no just-in-time membership, no SSO requirement).
type policy struct {
	gatehouse.OrgSSO
}

func (m *Manager) policy(tx gatehouse.Tx, orgID int64) (*policy, error) {
	c, err := tx.GetOrgSSO(orgID)
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return &policy{gatehouse.OrgSSO{OrgID: orgID}}, nil
	}
	if err != nil {
		return nil, err
	}
	return &policy{*c}, nil
}

// allows reports whether the organization accepts sign-in method.
func (p *policy) allows(method string) bool {
	return len(p.Methods) == 0 || slices.Contains(p.Methods, method)
}

// breakGlass reports whether userID keeps the token sign-in in an SSO-required org.
func (p *policy) breakGlass(userID int64) bool { return slices.Contains(p.BreakGlass, userID) }

// MayMintPersonalToken decides whether the holder of session s (nil: a caller with a
// personal token, no session) may get a new personal token, under the "SSO required"
// policy of every organization of user userID: in such an organization only a session
// that organization's SSO started (OIDC, GitHub, SAML) qualifies, unless the user is one
// of its break-glass admins. It returns EFORBIDDEN naming the organization.
func (m *Manager) MayMintPersonalToken(tx gatehouse.Tx, userID int64, s *gatehouse.Session) error {
	oms, err := tx.ListUserOrgs(userID)
	if err != nil {
		return err
	}
	for _, om := range oms {
		p, err := m.policy(tx, om.Org.ID)
		if err != nil {
			return err
		}
		if !p.Required || p.breakGlass(userID) {
			continue
		}
		if s != nil && s.OrgID == om.Org.ID && s.Method != gatehouse.SignInToken {
			continue
		}
		return gatehouse.Errorf(gatehouse.EFORBIDDEN, "organization %s requires single sign-on: get personal tokens by signing in through its identity provider (pulumi login, /login/%s/sso)", om.Org.Name, om.Org.Name)
	}
	return nil
}

// MayUseTokenSignIn decides whether user userID may start a session with an access token
// (the sign-in form's break-glass path): refused when an organization of theirs requires
// SSO or does not accept token sign-in, unless they are its break-glass admin.
func (m *Manager) MayUseTokenSignIn(tx gatehouse.Tx, userID int64) error {
	oms, err := tx.ListUserOrgs(userID)
	if err != nil {
		return err
	}
	for _, om := range oms {
		p, err := m.policy(tx, om.Org.ID)
		if err != nil {
			return err
		}
		if p.breakGlass(userID) {
			continue
		}
		if p.Required || !p.allows(gatehouse.SignInToken) {
			return gatehouse.Errorf(gatehouse.EFORBIDDEN, "organization %s requires single sign-on: sign in through its identity provider", om.Org.Name)
		}
	}
	return nil
}

// MaySessionActIn decides whether session s of user userID may act in organization orgID:
// when the organization requires single sign-on, only a session its own SSO started (OIDC,
// GitHub, SAML) qualifies, unless the user is one of its break-glass admins. A session
// another organization's identity provider started, or the token sign-in, is refused there
// with EFORBIDDEN naming the organization.
func (m *Manager) MaySessionActIn(tx gatehouse.Tx, org *gatehouse.Org, userID int64, s *gatehouse.Session) error {
	p, err := m.policy(tx, org.ID)
	if err != nil {
		return err
	}
	if !p.Required || p.breakGlass(userID) || s.OrgID == org.ID && s.Method != gatehouse.SignInToken {
		return nil
	}
	return gatehouse.Errorf(gatehouse.EFORBIDDEN, "organization %s requires single sign-on: sign in through its identity provider (/login/%s/sso) to act in it", org.Name, org.Name)
}
