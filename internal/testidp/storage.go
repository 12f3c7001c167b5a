package testidp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// scopeGroups is the scope that asks for the groups claim, as Dex and
// Keycloak name it.
const scopeGroups = "groups"

// claimGroups is the claim that carries User.Groups.
const claimGroups = "groups"

// errUnknownUserCode is returned for a user code the IdP never issued.
var errUnknownUserCode = errors.New("user code not found")

// subjectOf derives a stable, opaque subject from a username.
func subjectOf(username string) string {
	sum := sha256.Sum256([]byte("testidp subject " + username))
	return hex.EncodeToString(sum[:12])
}

// users is the IdP's user directory. It implements storage.UserStore; the
// users are keyed by subject, which is the OP's user ID.
type users struct {
	mu    sync.Mutex // protects bySub
	bySub map[string]User
}

func (u *users) add(usr User) User {
	if usr.Subject == "" {
		usr.Subject = subjectOf(usr.Username)
	}
	usr.Groups = slices.Clone(usr.Groups)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.bySub[usr.Subject] = usr
	return usr
}

func (u *users) bySubject(sub string) (User, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	usr, ok := u.bySub[sub]
	return usr, ok
}

func (u *users) byUsername(name string) (User, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, usr := range u.bySub {
		if usr.Username == name {
			return usr, true
		}
	}
	return User{}, false
}

func toStorageUser(usr User) *storage.User {
	return &storage.User{
		ID:                usr.Subject,
		Username:          usr.Username,
		FirstName:         usr.Username,
		Email:             usr.Email,
		EmailVerified:     usr.EmailVerified,
		PreferredLanguage: language.English,
	}
}

// GetUserByID implements storage.UserStore.
func (u *users) GetUserByID(id string) *storage.User {
	usr, ok := u.bySubject(id)
	if !ok {
		return nil
	}
	return toStorageUser(usr)
}

// GetUserByUsername implements storage.UserStore.
func (u *users) GetUserByUsername(name string) *storage.User {
	usr, ok := u.byUsername(name)
	if !ok {
		return nil
	}
	return toStorageUser(usr)
}

// ExampleClientID implements storage.UserStore; the example storage keys
// its JWT-profile service keys by it, which this IdP does not use.
func (u *users) ExampleClientID() string { return "service" }

// client is the one OAuth client the IdP knows: the bastion. It wraps the
// example storage's device client to be public when it has no secret, to
// use Options.IDTokenTTL, and to put the profile and email claims into the
// ID token (which is what the bastion reads).
type client struct {
	*storage.Client
	public bool
	idTTL  time.Duration
}

// AuthMethod implements op.Client.
func (c *client) AuthMethod() oidc.AuthMethod {
	if c.public {
		return oidc.AuthMethodNone
	}
	return oidc.AuthMethodBasic
}

// ApplicationType implements op.Client; the OP treats a web client as
// confidential (it must authenticate at the token endpoint).
func (c *client) ApplicationType() op.ApplicationType {
	if c.public {
		return op.ApplicationTypeNative
	}
	return op.ApplicationTypeWeb
}

// IDTokenLifetime implements op.Client.
func (c *client) IDTokenLifetime() time.Duration { return c.idTTL }

// IDTokenUserinfoClaimsAssertion implements op.Client: the profile and
// email claims go into the ID token even though an access token is issued.
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }

// IsScopeAllowed implements op.Client.
func (c *client) IsScopeAllowed(scope string) bool { return scope == scopeGroups }

// device is what the IdP tracks of one device authorization, for
// WaitPending and the /device form.
type device struct {
	userCode string
	state    *op.DeviceAuthorizationState
}

// store wraps the example storage (which implements the OP's storage,
// device authorizations included) to add the groups and email_verified
// claims, to serve the one client, and to make the device authorization
// state safe to read while the person approves: the example storage hands
// out a pointer to its state, which it writes under its own lock, so every
// read and write of device state goes through mu here and readers get
// copies.
type store struct {
	*storage.Storage
	users  *users
	client *client

	mu      sync.Mutex // protects devices, changed and every *op.DeviceAuthorizationState
	devices []device   // in creation order
	changed chan struct{}
}

func newStore(o Options, u *users) *store {
	sc := storage.DeviceClient(o.ClientID, o.ClientSecret)
	return &store{
		Storage: storage.NewStorageWithClients(u, map[string]*storage.Client{o.ClientID: sc}),
		users:   u,
		client:  &client{Client: sc, public: o.ClientSecret == "", idTTL: o.IDTokenTTL},
		changed: make(chan struct{}),
	}
}

// notifyLocked wakes WaitPending; s.mu must be held.
func (s *store) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// GetClientByClientID implements op.Storage.
func (s *store) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if id != s.client.GetID() {
		return nil, oidc.ErrInvalidClient().WithDescription("unknown client")
	}
	return s.client, nil
}

// StoreDeviceAuthorization implements op.DeviceAuthorizationStorage.
func (s *store) StoreDeviceAuthorization(ctx context.Context, clientID, deviceCode, userCode string, expires time.Time, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.Storage.StoreDeviceAuthorization(ctx, clientID, deviceCode, userCode, expires, scopes); err != nil {
		return err
	}
	st, err := s.Storage.GetDeviceAuthorizationByUserCode(ctx, userCode)
	if err != nil {
		return err
	}
	s.devices = append(s.devices, device{userCode: userCode, state: st})
	s.notifyLocked()
	return nil
}

// GetDeviceAuthorizatonState implements op.DeviceAuthorizationStorage
// (the misspelling is the OP's).
func (s *store) GetDeviceAuthorizatonState(ctx context.Context, clientID, deviceCode string) (*op.DeviceAuthorizationState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.Storage.GetDeviceAuthorizatonState(ctx, clientID, deviceCode)
	if err != nil {
		return nil, err
	}
	cp := *st
	return &cp, nil
}

// GetDeviceAuthorizationByUserCode implements op.DeviceAuthorizationStorage.
func (s *store) GetDeviceAuthorizationByUserCode(ctx context.Context, userCode string) (*op.DeviceAuthorizationState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.Storage.GetDeviceAuthorizationByUserCode(ctx, userCode)
	if err != nil {
		return nil, errUnknownUserCode
	}
	cp := *st
	return &cp, nil
}

// decide approves (subject != "") or denies the device authorization of
// userCode. It fails for an unknown code, a decided one and an expired one,
// as a real IdP's page would.
func (s *store) decide(ctx context.Context, userCode, subject string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.Storage.GetDeviceAuthorizationByUserCode(ctx, userCode)
	if err != nil {
		return errUnknownUserCode
	}
	switch {
	case st.Done || st.Denied:
		return errors.New("code already used")
	case time.Now().After(st.Expires):
		return errors.New("code expired")
	}
	if subject == "" {
		err = s.Storage.DenyDeviceAuthorization(ctx, userCode)
	} else {
		err = s.Storage.CompleteDeviceAuthorization(ctx, userCode, subject)
	}
	s.notifyLocked()
	return err
}

// CompleteDeviceAuthorization implements op.DeviceAuthorizationStorage.
func (s *store) CompleteDeviceAuthorization(ctx context.Context, userCode, subject string) error {
	return s.decide(ctx, userCode, subject)
}

// DenyDeviceAuthorization implements op.DeviceAuthorizationStorage.
func (s *store) DenyDeviceAuthorization(ctx context.Context, userCode string) error {
	return s.decide(ctx, userCode, "")
}

// pending returns the first user code neither approved, denied nor
// expired, and a channel closed at the next change.
func (s *store) pending() (string, bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for _, d := range s.devices {
		if !d.state.Done && !d.state.Denied && now.Before(d.state.Expires) {
			return d.userCode, true, s.changed
		}
	}
	return "", false, s.changed
}

// addClaims adds the groups claim (when the groups scope was asked for)
// and an explicit email_verified=false, which the OP's claims type omits.
func (s *store) addClaims(info *oidc.UserInfo, sub string, scopes []string) {
	usr, ok := s.users.bySubject(sub)
	if !ok {
		return
	}
	if slices.Contains(scopes, scopeGroups) {
		groups := usr.Groups
		if groups == nil {
			groups = []string{}
		}
		info.AppendClaims(claimGroups, groups)
	}
	if slices.Contains(scopes, oidc.ScopeEmail) && !usr.EmailVerified {
		info.AppendClaims("email_verified", false)
	}
	if slices.Contains(scopes, oidc.ScopeProfile) {
		info.Name = usr.Username
		info.GivenName = ""
	}
}

// SetUserinfoFromRequest implements op.CanSetUserinfoFromRequest; the OP
// calls it to fill the ID token.
func (s *store) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, info, req, scopes); err != nil {
		return err
	}
	s.addClaims(info, req.GetSubject(), scopes)
	return nil
}

var (
	_ op.Storage                    = (*store)(nil)
	_ op.DeviceAuthorizationStorage = (*store)(nil)
	_ op.CanSetUserinfoFromRequest  = (*store)(nil)
	_ op.Client                     = (*client)(nil)
	_ storage.UserStore             = (*users)(nil)
)
