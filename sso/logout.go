package sso

import (
	"context"
	"net/http"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Logout ends the request's session (POST /logout): the request must pass CheckCSRF. It
// deletes the session (every process refuses it from the next request on), records the
// sign-out, clears the cookie and shows a signed-out page, or redirects to a same-origin
// ?return= path. Without a live session it only clears the cookie.
func (m *Manager) Logout(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	var sess *gatehouse.Session
	var user *gatehouse.User
	err := m.store.View(ctx, func(tx gatehouse.Tx) error {
		var err error
		sess, user, err = m.Lookup(tx, r)
		return err
	})
	if err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND) && !gatehouse.IsCode(err, gatehouse.EUNAUTHORIZED) {
		m.ErrorPage(w, r, http.StatusServiceUnavailable, "Sign-out failed", gatehouse.ErrorMessage(err))
		return
	}
	if sess != nil {
		if err := m.CheckCSRF(r, sess); err != nil {
			ev := m.event(r, w, ActionLogout, nil, user, gatehouse.OutcomeDenied, gatehouse.ErrorMessage(err))
			_ = m.store.Update(context.WithoutCancel(ctx), func(tx gatehouse.Tx) error { return tx.AppendAudit(ev) })
			m.ErrorPage(w, r, http.StatusForbidden, "Sign-out refused", gatehouse.ErrorMessage(err))
			return
		}
		var ev *gatehouse.AuditEvent
		err := m.store.Update(ctx, func(tx gatehouse.Tx) error {
			var org *gatehouse.Org
			if sess.OrgID != 0 {
				if o, err := tx.GetOrg(sess.OrgID); err == nil {
					org = o
				}
			}
			ev = m.event(r, w, ActionLogout, org, user, gatehouse.OutcomeSuccess, "")
			ev.Details["session"], ev.Details["method"] = sess.ID, sess.Method
			if err := tx.DeleteSession(sess.ID); err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
				return err
			}
			return tx.AppendAudit(ev)
		})
		if err != nil {
			m.ErrorPage(w, r, http.StatusServiceUnavailable, "Sign-out failed", "the session could not be ended: "+gatehouse.ErrorMessage(err))
			return
		}
		m.notify(ev)
	}
	m.clearCookie(w, r)
	if ret := r.URL.Query().Get("return"); ret != "" {
		http.Redirect(w, r, SafeReturn(ret), http.StatusSeeOther)
		return
	}
	(&Page{Title: "Signed out", Paragraphs: []string{"You are signed out of Gatehouse."}}).Render(w, http.StatusOK)
}
