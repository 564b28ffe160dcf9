package images

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	ggcr "github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-runtime/berth/pkg/images/reference"
	"github.com/berth-runtime/berth/pkg/images/remote"
)

// Pull fetches ref (mirrors first, then the registry itself) and unpacks its layers.
// Concurrent pulls of the same reference with the same credentials share one download.
// Its errors carry no credentials (remote.Redact): they end up in pod events and logs.
func (s *Service) Pull(ctx context.Context, ref string, auth *Auth) (Image, error) {
	r, err := reference.Parse(ref)
	if err != nil {
		// The kubelet passes the pod spec's image as written, which may be a URL with a password.
		return Image{}, remote.Redact(err)
	}
	cfg, err := auth.config()
	if err != nil {
		return Image{}, fmt.Errorf("pull %s: %w", r, err)
	}
	key := r.String() + " " + authKey(auth)
	return s.flights.do(ctx, key, func(ctx context.Context) (Image, error) {
		return s.pull(ctx, r, auth, cfg)
	})
}

func (s *Service) pull(ctx context.Context, r reference.Reference, auth *Auth, cfg authn.AuthConfig) (Image, error) {
	start := time.Now()
	live := s.live.Load()
	hosts, err := remote.Config{CertsDir: live.certsDir, Insecure: live.insecure}.Hosts(r.Domain)
	if err != nil {
		return Image{}, fmt.Errorf("pull %s: registry hosts: %w", r, err)
	}
	ctx, prog, stop := watchProgress(ctx, s.opts.PullProgressTimeout, r.String())
	defer stop()
	var failed []string
	var lastErr error
	for _, h := range hosts {
		if !h.Capabilities.Pull || (r.Digest == "" && !h.Capabilities.Resolve) {
			continue
		}
		img, err := s.pullFrom(ctx, r, h, auth, cfg, prog)
		// Registry errors quote URLs, which may carry credentials: redact before logging.
		err = remote.Redact(err)
		if err == nil {
			s.log.Info("pulled image", "ref", r.String(), "id", img.ID, "host", h.String(), "took", time.Since(start))
			return img, nil
		}
		if ctx.Err() != nil {
			return Image{}, fmt.Errorf("pull %s from %s: %w", r, h, context.Cause(ctx))
		}
		lastErr = err
		if h.Mirror {
			s.log.Warn("mirror failed, trying next host", "ref", r.String(), "mirror", h.String(), "err", err)
			failed = append(failed, err.Error())
		}
	}
	if lastErr == nil {
		return Image{}, fmt.Errorf("pull %s: no host of %s may resolve it: %w", r, r.Domain, errdefs.ErrFailedPrecondition)
	}
	if len(failed) > 0 && !hosts[len(hosts)-1].Mirror {
		return Image{}, fmt.Errorf("pull %s: %w (mirrors failed too: %s)", r, lastErr, strings.Join(failed, "; "))
	}
	return Image{}, fmt.Errorf("pull %s: %w", r, lastErr)
}

// pullFrom resolves r on one host and installs the image for this platform.
func (s *Service) pullFrom(ctx context.Context, r reference.Reference, h remote.Host, auth *Auth, cfg authn.AuthConfig, prog *progress) (Image, error) {
	rt, closeIdle, err := h.Transport(prog.bump)
	if err != nil {
		return Image{}, err
	}
	defer closeIdle()
	var nopts []name.Option
	if h.Scheme == "http" {
		nopts = append(nopts, name.Insecure)
	}
	repo := h.Host + "/" + r.Path
	var nref name.Reference
	if r.Digest != "" {
		nref, err = name.NewDigest(repo+"@"+r.Digest, nopts...)
	} else {
		nref, err = name.NewTag(repo+":"+r.Tag, nopts...)
	}
	if err != nil {
		return Image{}, fmt.Errorf("reference %s on %s: %w: %w", r, h, errdefs.ErrInvalidArgument, err)
	}
	ropts := []ggcr.Option{
		ggcr.WithContext(ctx),
		ggcr.WithTransport(rt),
		ggcr.WithPlatform(hostPlatform()),
		ggcr.WithAuth(authFor(h, auth, cfg)),
	}
	desc, err := ggcr.Get(nref, ropts...)
	if err != nil {
		return Image{}, remote.Classify(h, err)
	}
	img, err := desc.Image()
	if err != nil {
		return Image{}, remote.Classify(h, fmt.Errorf("select %s image: %w", hostPlatform(), err))
	}
	req := installRequest{img: img, source: h.String()}
	if desc.MediaType.IsIndex() {
		req.topDigest, req.topRaw = desc.Digest.String(), desc.Manifest
	}
	if t := r.Tagged(); t != "" && r.Digest == "" {
		req.names = append(req.names, t)
	}
	// The repo digest is what the reference resolved to: the index for multi-platform images.
	req.names = append(req.names, r.Name()+"@"+desc.Digest.String())
	out, err := s.install(ctx, req)
	if err != nil {
		return Image{}, remote.Classify(h, err)
	}
	return out, nil
}

func hostPlatform() v1.Platform {
	p := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if runtime.GOARCH == "arm" {
		p.Variant = "v7"
	}
	return p
}

// config turns CRI credentials into ggcr's form; "auth" is base64("user:password").
func (a *Auth) config() (authn.AuthConfig, error) {
	if a == nil {
		return authn.AuthConfig{}, nil
	}
	c := authn.AuthConfig{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken}
	if a.Auth != "" && c.Username == "" {
		raw, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return c, fmt.Errorf("decode auth: %w: %w", errdefs.ErrInvalidArgument, err)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return c, fmt.Errorf("decode auth: want user:password: %w", errdefs.ErrInvalidArgument)
		}
		c.Username, c.Password = user, pass
	}
	return c, nil
}

// authFor sends the kubelet's credentials to the registry itself, and to a mirror only when
// they were issued for that mirror: a mirror operator must not harvest upstream secrets.
func authFor(h remote.Host, a *Auth, cfg authn.AuthConfig) authn.Authenticator {
	if cfg == (authn.AuthConfig{}) {
		return authn.Anonymous
	}
	if h.Mirror && serverHost(a.ServerAddress) != h.Host {
		return authn.Anonymous
	}
	return authn.FromConfig(cfg)
}

func serverHost(addr string) string {
	if !strings.Contains(addr, "://") {
		addr = "https://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return ""
	}
	return u.Host
}

func authKey(a *Auth) string {
	if a == nil {
		return ""
	}
	sum := sha256.Sum256([]byte(strings.Join([]string{a.Username, a.Password, a.Auth, a.ServerAddress, a.IdentityToken, a.RegistryToken}, "\x00")))
	return hex.EncodeToString(sum[:8])
}

// progress records when the pull last received bytes from any registry.
type progress struct{ last atomic.Int64 }

func (p *progress) bump(int) { p.last.Store(time.Now().UnixNano()) }

// watchProgress cancels the returned context when no bytes arrive for timeout, with a cause
// that says so (a stalled mirror or registry otherwise hangs the kubelet's pull forever).
func watchProgress(ctx context.Context, timeout time.Duration, what string) (context.Context, *progress, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	p := &progress{}
	p.bump(0)
	tick := max(timeout/10, 10*time.Millisecond)
	go func() {
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if idle := time.Since(time.Unix(0, p.last.Load())); idle > timeout {
					cancel(fmt.Errorf("pull %s: no data received for %s (pull progress timeout): %w", what, timeout.Round(time.Millisecond), errdefs.ErrUnavailable))
					return
				}
			}
		}
	}()
	return ctx, p, func() { cancel(nil) }
}
