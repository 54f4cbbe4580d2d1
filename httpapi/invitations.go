package httpapi

import (
	"net/http"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
)

// Invitations. An organization admin adds people who are not the organization's own by
// inviting their user name; the person becomes a member by accepting. Nothing on the
// organization's side tells whether the name exists or what the person's email is: an
// invitation for a name that nobody has looks exactly like any other. An invitation is bound
// to the user who has the name when it is made; one for a name nobody has can never be
// answered (an account made later under the name does not get it). Adding a user
// directly (POST /api/orgs/{org}/members/{user}) is left to site administrators, except for
// accounts the organization created itself (see authz.decideDirectAdd).

const maxInvitationDays = 90

// Invitation is an invitation on the wire.
type Invitation struct {
	ID        string `json:"id"`
	Org       string `json:"org"`
	UserName  string `json:"userName"`
	Role      string `json:"role"`
	Status    string `json:"status"` // pending, accepted, declined, revoked or expired
	InvitedBy string `json:"invitedBy"`
	Created   string `json:"created"`
	Expires   string `json:"expires"`
	Resolved  string `json:"resolved,omitempty"`
}

// InvitationList is a list of invitations on the wire.
type InvitationList struct {
	Invitations []Invitation `json:"invitations"`
}

func invitationOf(inv *gatehouse.Invitation, now time.Time) Invitation {
	out := Invitation{
		ID: inv.ID, Org: inv.OrgName, UserName: inv.UserName, Role: string(inv.Role), Status: string(inv.StatusAt(now)),
		InvitedBy: inv.InvitedBy, Created: inv.Created.UTC().Format(time.RFC3339), Expires: inv.Expires.UTC().Format(time.RFC3339),
	}
	if !inv.Resolved.IsZero() {
		out.Resolved = inv.Resolved.UTC().Format(time.RFC3339)
	}
	return out
}

// resolveInvitation loads the invitation named in the path ({invitationID}); one of another
// organization than the path's is "not found", like a missing one.
func (s *Server) resolveInvitation(rq *Request, tx gatehouse.Tx) error {
	id := rq.PathValue("invitationID")
	if id == "" {
		return nil
	}
	inv, err := tx.GetInvitation(id)
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return notFound(rq, err)
		}
		return err
	}
	if rq.Org != nil && inv.OrgID != rq.Org.ID {
		return notFound(rq, nil)
	}
	rq.Invitation = inv
	rq.event.OrgID, rq.event.OrgName = inv.OrgID, inv.OrgName
	rq.event.Target = inv.OrgName + "/invitations/" + inv.ID
	rq.Detail("user", inv.UserName)
	return nil
}

// createInvitation is POST /api/orgs/{org}/invitations {userName, role, expiresInDays}.
// The answer is the same whether or not a user of that name exists. The invitation is bound
// to that user's ID; for a name nobody has, to no one (UserID 0), so that whoever creates an
// account of that name later cannot accept it.
func (s *Server) createInvitation(rq *Request) (any, error) {
	var req struct {
		UserName      string `json:"userName"`
		Role          string `json:"role"`
		ExpiresInDays int    `json:"expiresInDays"`
	}
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	if err := validOwner("user", req.UserName); err != nil {
		return nil, err
	}
	role, err := parseRole(req.Role)
	if err != nil {
		return nil, err
	}
	days := req.ExpiresInDays
	if days == 0 {
		days = int(gatehouse.DefaultInvitationLifetime / (24 * time.Hour))
	}
	if days < 1 || days > maxInvitationDays {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "expiresInDays must be 1 to %d (default 7)", maxInvitationDays)
	}
	rq.event.Target = rq.Org.Name + "/invitations/" + req.UserName
	rq.Detail("user", req.UserName)
	rq.Detail("role", string(role))
	inv := &gatehouse.Invitation{OrgID: rq.Org.ID, OrgName: rq.Org.Name, UserName: req.UserName, Role: role, InvitedBy: rq.Subject.Name()}
	err = rq.Change(func(tx gatehouse.Tx) error {
		// A member of this organization is visible to its admins anyway; everyone else, existing
		// or not, gets the same invitation.
		if u, err := tx.GetUserByName(req.UserName); err == nil {
			if _, err := tx.GetMember(rq.Org.ID, u.ID); err == nil {
				return gatehouse.Errorf(gatehouse.ECONFLICT, "%s is already a member of %s", req.UserName, rq.Org.Name)
			} else if !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
				return err
			}
			inv.UserID = u.ID
		} else if !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return err
		}
		inv.Expires = tx.Now().Add(time.Duration(days) * 24 * time.Hour)
		if err := tx.CreateInvitation(inv); err != nil {
			return err
		}
		rq.event.Target = rq.Org.Name + "/invitations/" + inv.ID
		rq.Detail("invitation", inv.ID)
		rq.Detail("expires", inv.Expires.UTC().Format(time.RFC3339))
		return nil
	})
	if err != nil {
		return nil, err
	}
	rq.status = http.StatusCreated
	return invitationOf(inv, inv.Created), nil
}

// listOrgInvitations is GET /api/orgs/{org}/invitations[?pending=true], newest first.
func (s *Server) listOrgInvitations(rq *Request) (any, error) {
	return s.listInvitations(rq, gatehouse.InvitationFilter{OrgID: rq.Org.ID, Pending: rq.URL.Query().Get("pending") == "true"})
}

// listMyInvitations is GET /api/user/invitations: the caller's invitations that can still
// be answered (those bound to the caller's user ID, not merely of the caller's name).
func (s *Server) listMyInvitations(rq *Request) (any, error) {
	return s.listInvitations(rq, gatehouse.InvitationFilter{UserID: rq.Subject.User.ID, Pending: true})
}

func (s *Server) listInvitations(rq *Request, f gatehouse.InvitationFilter) (any, error) {
	out := InvitationList{Invitations: []Invitation{}}
	err := rq.View(func(tx gatehouse.Tx) error {
		invs, err := tx.ListInvitations(f)
		for i := range invs {
			out.Invitations = append(out.Invitations, invitationOf(&invs[i], tx.Now()))
		}
		return err
	})
	return out, err
}

// revokeInvitation is DELETE /api/orgs/{org}/invitations/{invitationID}.
func (s *Server) revokeInvitation(rq *Request) (any, error) {
	return s.answerInvitation(rq, gatehouse.InvitationRevoked)
}

// acceptInvitation is POST /api/user/invitations/{invitationID}/accept: the caller becomes a
// member of the organization with the invited role.
func (s *Server) acceptInvitation(rq *Request) (any, error) {
	return s.answerInvitation(rq, gatehouse.InvitationAccepted)
}

// declineInvitation is POST /api/user/invitations/{invitationID}/decline.
func (s *Server) declineInvitation(rq *Request) (any, error) {
	return s.answerInvitation(rq, gatehouse.InvitationDeclined)
}

func (s *Server) answerInvitation(rq *Request, status gatehouse.InvitationStatus) (any, error) {
	var inv *gatehouse.Invitation
	var now time.Time
	err := rq.Change(func(tx gatehouse.Tx) (err error) {
		now = tx.Now()
		inv, err = tx.ResolveInvitation(rq.Invitation.ID, status)
		if err != nil || status == gatehouse.InvitationRevoked {
			return err
		}
		me := rq.Subject.User
		if !authz.InvitedUser(inv, me) {
			// authz.Decide hid it already; checked again on the row this transaction answered
			// (an error rolls the answer back).
			return notFound(rq, nil)
		}
		if status != gatehouse.InvitationAccepted {
			return nil
		}
		if _, err := tx.GetMember(inv.OrgID, me.ID); err == nil {
			return gatehouse.Errorf(gatehouse.ECONFLICT, "you are already a member of %s", inv.OrgName)
		} else if !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return err
		}
		rq.Detail("role", string(inv.Role))
		return tx.PutMember(inv.OrgID, me.ID, inv.Role)
	})
	if err != nil {
		return nil, err
	}
	return invitationOf(inv, now), nil
}

// personFor loads what the decision on adding the user called name to org directly needs
// (authz.Person); member reports that the user already belongs to org.
func personFor(tx gatehouse.Tx, org *gatehouse.Org, name string) (p *authz.Person, member bool, err error) {
	p = &authz.Person{Name: name}
	u, err := tx.GetUserByName(name)
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return p, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	orgs, err := tx.ListUserOrgs(u.ID)
	if err != nil {
		return nil, false, err
	}
	for _, om := range orgs {
		if om.Org.ID == org.ID {
			member = true
		} else {
			p.OtherOrgs++
		}
	}
	p.User = u
	return p, member, nil
}

// authorizeDirectAdd asks the decision point whether the caller may add name to the
// organization without an invitation (recording a refusal). The handler decides again
// inside its transaction (directAdd), where the facts cannot change underneath.
func (rq *Request) authorizeDirectAdd(name string) error {
	var p *authz.Person
	var member bool
	if err := rq.View(func(tx gatehouse.Tx) (err error) {
		p, member, err = personFor(tx, rq.Org, name)
		return err
	}); err != nil {
		return err
	}
	if member {
		return gatehouse.Errorf(gatehouse.ECONFLICT, "%s is already a member of %s", name, rq.Org.Name)
	}
	return rq.authorize(authz.OrgMemberWrite, authz.Resource{Org: rq.Org, Person: p})
}

// directAdd returns the user called name whom the caller may add to the organization
// without an invitation, deciding again within tx.
func (rq *Request) directAdd(tx gatehouse.Tx, name string) (*gatehouse.User, error) {
	p, member, err := personFor(tx, rq.Org, name)
	if err != nil {
		return nil, err
	}
	if member {
		return nil, gatehouse.Errorf(gatehouse.ECONFLICT, "%s is already a member of %s", name, rq.Org.Name)
	}
	if d := authz.Decide(rq.Subject, authz.OrgMemberWrite, authz.Resource{Org: rq.Org, Person: p}, rq.facts); !d.Allow {
		return nil, gatehouse.Errorf(gatehouse.EFORBIDDEN, "%s", d.Reason)
	}
	if p.User == nil {
		return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "user '%s' not found", name)
	}
	return p.User, nil
}

// mayReadEmails reports whether the caller sees other members' email addresses
// (authz.OrgMemberEmails: the organization's admins).
func (rq *Request) mayReadEmails() bool {
	return authz.Decide(rq.Subject, authz.OrgMemberEmails, authz.Resource{Org: rq.Org}, rq.facts).Allow
}

// userFor is u as the caller may see it: the email only for their own entry or when emails
// is set (mayReadEmails).
func (rq *Request) userFor(u *gatehouse.User, emails bool) userJSON {
	out := userOf(u)
	if !emails && (rq.Subject.User == nil || rq.Subject.User.ID != u.ID) {
		out.Email = ""
	}
	return out
}
