package httpapi

import (
	"strconv"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// siteUserJSON is a user as the site administration lists them.
type siteUserJSON struct {
	Name      string `json:"name"`
	Email     string `json:"email,omitempty"`
	SiteAdmin bool   `json:"siteAdmin"`
	Created   string `json:"created"`
	Disabled  string `json:"disabled,omitempty"` // RFC 3339; absent: active
}

func siteUser(u gatehouse.User) siteUserJSON {
	j := siteUserJSON{Name: u.Name, Email: u.Email, SiteAdmin: u.SiteAdmin, Created: u.Created.UTC().Format(time.RFC3339)}
	if !u.Disabled.IsZero() {
		j.Disabled = u.Disabled.UTC().Format(time.RFC3339)
	}
	return j
}

// listSiteUsers is GET /api/admin/users (site administrators).
func (s *Server) listSiteUsers(rq *Request) (any, error) {
	out := struct {
		Users []siteUserJSON `json:"users"`
	}{Users: []siteUserJSON{}}
	err := rq.View(func(tx gatehouse.Tx) error {
		us, err := tx.ListUsers()
		for _, u := range us {
			out.Users = append(out.Users, siteUser(u))
		}
		return err
	})
	return out, err
}

// disableUser is POST /api/admin/users/{user}/disable (site administrators): the user can
// no longer authenticate and every live personal token of theirs is revoked, in one
// transaction with its audit record; the security epoch bump ends cached identities on
// every process at once.
func (s *Server) disableUser(rq *Request) (any, error) {
	name := rq.PathValue("user")
	rq.event.Target = name
	var u *gatehouse.User
	var revoked int
	err := rq.Change(func(tx gatehouse.Tx) error {
		var err error
		if u, err = tx.GetUserByName(name); err != nil {
			return err
		}
		if u.ID == rq.Subject.User.ID {
			return gatehouse.Errorf(gatehouse.EINVALID, "you cannot disable yourself")
		}
		if revoked, err = tx.DisableUser(u.ID, tx.Now()); err != nil {
			return err
		}
		rq.Detail("revoked_tokens", strconv.Itoa(revoked))
		u, err = tx.GetUser(u.ID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return struct {
		siteUserJSON
		RevokedTokens int `json:"revokedTokens"`
	}{siteUser(*u), revoked}, nil
}
