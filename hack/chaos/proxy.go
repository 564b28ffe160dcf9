package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Registry fault modes of the proxy, applied to blob downloads only.
const (
	regOK      = "ok"
	regStall   = "stall"   // half the blob, then nothing until the client gives up
	regDrop    = "drop"    // half the blob, then the connection is closed
	regCorrupt = "corrupt" // the whole blob with one byte flipped
)

// faultProxy sits between the agent and the loopback registry and damages blob downloads
// while its mode says so.
type faultProxy struct {
	mode atomic.Value // string
	srv  *http.Server
	ln   net.Listener
	stop chan struct{}
}

func startProxy(upstream string) (*faultProxy, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &faultProxy{ln: ln, stop: make(chan struct{})}
	p.mode.Store(regOK)
	rp := httputil.NewSingleHostReverseProxy(u)
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mode := p.mode.Load().(string)
		if mode == regOK || r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
			rp.ServeHTTP(w, r)
			return
		}
		p.damage(w, r, u, mode)
	}), ReadHeaderTimeout: 10 * time.Second}
	go p.srv.Serve(ln)
	return p, nil
}

func (p *faultProxy) addr() string    { return p.ln.Addr().String() }
func (p *faultProxy) set(mode string) { p.mode.Store(mode) }
func (p *faultProxy) close() {
	close(p.stop)
	p.srv.Close()
}

// damage fetches the blob itself and sends it damaged as mode says.
func (p *faultProxy) damage(w http.ResponseWriter, r *http.Request, upstream *url.URL, mode string) {
	req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, upstream.String()+r.URL.Path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		w.WriteHeader(resp.StatusCode)
		w.Write(body)
		return
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(http.StatusOK)
	half := len(body) / 2
	switch mode {
	case regCorrupt:
		body[half] ^= 0xff
		w.Write(body)
	case regStall:
		w.Write(body[:half])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-p.stop:
		case <-time.After(2 * time.Minute):
		}
	case regDrop:
		w.Write(body[:half])
		w.(http.Flusher).Flush()
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
			}
		}
	}
}
