package server

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/errdefs"
)

const (
	// tokenTTL is how long a streaming URL stays valid after Exec/Attach/PortForward issued
	// it: the client (the kubelet, crictl) connects at once.
	tokenTTL = time.Minute
	// maxTokens bounds the URLs issued and not yet used: a caller that asks and never
	// connects gets ResourceExhausted, not an agent that grows.
	maxTokens = 1000
	// tokenBytes of randomness: the URL is the only credential the streaming server checks.
	tokenBytes = 16
)

// tokenCache holds the request behind each issued streaming URL until its client connects
// (single use) or it expires. The streaming server serves every transport from this one
// record, whatever protocol the client picks.
type tokenCache struct {
	mu  sync.Mutex
	m   map[string]tokenEntry
	now func() time.Time
}

type tokenEntry struct {
	req     any // *runtimeapi.ExecRequest, AttachRequest or PortForwardRequest
	expires time.Time
}

func newTokenCache() *tokenCache {
	return &tokenCache{m: map[string]tokenEntry{}, now: time.Now}
}

// insert records req and returns its token.
func (c *tokenCache) insert(req any) (string, error) {
	raw := make([]byte, tokenBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("streaming token: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(raw)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gc()
	if len(c.m) >= maxTokens {
		return "", fmt.Errorf("%d streaming URLs issued and not yet used: %w", len(c.m), errdefs.ErrResourceExhausted)
	}
	c.m[token] = tokenEntry{req: req, expires: c.now().Add(tokenTTL)}
	return token, nil
}

// consume returns the request behind token and forgets it; an unknown, used or expired
// token has none.
func (c *tokenCache) consume(token string) (any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[token]
	delete(c.m, token)
	if !ok || c.now().After(e.expires) {
		return nil, false
	}
	return e.req, true
}

// gc drops expired entries; the map is at most maxTokens long, so a full scan is cheap.
func (c *tokenCache) gc() {
	now := c.now()
	for k, e := range c.m {
		if now.After(e.expires) {
			delete(c.m, k)
		}
	}
}
