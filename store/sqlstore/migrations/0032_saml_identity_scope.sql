-- A SAML identity belongs to the organization whose SAML configuration linked it: its key
-- is ('saml:' org id ':' IdP entity ID, NameID). An entity ID is only what an admin's
-- metadata claims, so another organization's configuration (its own key, the same
-- entity ID) must never find, or pre-claim, this organization's people (security review).
UPDATE user_identities SET issuer = 'saml:' || CAST(org_id AS TEXT) || ':' || issuer WHERE provider = 'saml';
