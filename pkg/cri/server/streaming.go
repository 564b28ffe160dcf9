package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/config"
)

// errClientGone is the cause of a streaming request's context when its client's connection
// broke.
var errClientGone = errors.New("streaming client disconnected")

// streamServer is the HTTP server behind the URLs that Exec, Attach and PortForward return
// (streaming_handler.go: SPDY, WebSocket v1-v5, SPDY tunnelled through a WebSocket). The
// kubelet, or crictl, connects to it.
type streamServer struct {
	handler *streamHandler
	http    *http.Server
	addr    string
	done    chan struct{}
	conns   *connSet
}

// newStreamServer listens on cfg.Address and serves rt. The URLs carry the listener's real
// port (an address with port 0 picks one).
func newStreamServer(cfg config.StreamingConfig, rt sessionRuntime, log *slog.Logger) (*streamServer, error) {
	ln, err := net.Listen("tcp", cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("streaming server: listen on %s: %w", cfg.Address, err)
	}
	addr := advertised(ln.Addr().(*net.TCPAddr))
	h := &streamHandler{
		rt:       rt,
		tokens:   newTokenCache(),
		base:     &url.URL{Scheme: "http", Host: addr, Path: "/"},
		idle:     cfg.IdleTimeout.Duration,
		creation: cfg.StreamCreationTimeout.Duration,
		log:      log,
	}
	s := &streamServer{
		handler: h,
		addr:    addr,
		done:    make(chan struct{}),
		conns:   &connSet{m: map[*watchedConn]struct{}{}},
		http: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 30 * time.Second,
			ConnContext:       watchConn,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
	}
	go func() {
		defer close(s.done)
		if err := s.http.Serve(watchListener{ln, s.conns}); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("streaming server stopped", "err", err)
		}
	}()
	log.Info("streaming server listening", "address", addr)
	return s, nil
}

// execURL issues the URL of an exec session.
func (s *streamServer) execURL(req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if err := checkStreams(req.GetStdin(), req.GetStdout(), req.GetStderr(), req.GetTty()); err != nil {
		return nil, err
	}
	u, err := s.handler.issue(kindExec, req)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ExecResponse{Url: u}, nil
}

// attachURL issues the URL of an attach session.
func (s *streamServer) attachURL(req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	if err := checkStreams(req.GetStdin(), req.GetStdout(), req.GetStderr(), req.GetTty()); err != nil {
		return nil, err
	}
	u, err := s.handler.issue(kindAttach, req)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.AttachResponse{Url: u}, nil
}

// portForwardURL issues the URL of a port-forward session.
func (s *streamServer) portForwardURL(req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	u, err := s.handler.issue(kindPortForward, req)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PortForwardResponse{Url: u}, nil
}

// advertised is the host:port put in URLs: an unspecified listen address (every interface)
// is reached through loopback, where the kubelet, which proxies the streams, runs.
func advertised(a *net.TCPAddr) string {
	ip := a.IP
	switch {
	case ip == nil || ip.Equal(net.IPv4zero):
		ip = net.IPv4(127, 0, 0, 1)
	case ip.Equal(net.IPv6unspecified):
		ip = net.IPv6loopback
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(a.Port))
}

// Close stops the server and drops every stream connection, hijacked ones included (which
// http.Server.Close leaves alone); their sessions end as if the clients had left.
func (s *streamServer) Close() error {
	err := s.http.Close()
	<-s.done
	s.conns.closeAll()
	return err
}

// connSet tracks the open connections.
type connSet struct {
	mu sync.Mutex
	m  map[*watchedConn]struct{}
}

func (s *connSet) add(c *watchedConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[c] = struct{}{}
}

func (s *connSet) remove(c *watchedConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, c)
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	conns := make([]*watchedConn, 0, len(s.m))
	for c := range s.m {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// watchedConn cancels its context when reading from the client fails. After an upgrade to
// SPDY or WebSocket the connection is hijacked and net/http no longer cancels the request's
// context when the client goes; the exec'd process would outlive it.
type watchedConn struct {
	net.Conn
	set    *connSet
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	// net/http aborts its own background read with a past deadline when it hands the
	// connection over: that is not the client leaving.
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		c.cancel(errClientGone)
	}
	return n, err
}

// Close ends the connection's sessions too: the WebSocket handler closes the connection when
// the client sends its close frame, after which nothing reads it and no error would come.
func (c *watchedConn) Close() error {
	c.set.remove(c)
	c.cancel(errClientGone)
	return c.Conn.Close()
}

type watchListener struct {
	net.Listener
	set *connSet
}

func (l watchListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	wc := &watchedConn{Conn: c, set: l.set}
	wc.ctx, wc.cancel = context.WithCancelCause(context.Background())
	l.set.add(wc)
	return wc, nil
}

// watchConn makes the requests of a connection end with it: their contexts derive from the
// one returned here, which ends when the watchedConn's does.
func watchConn(ctx context.Context, c net.Conn) context.Context {
	wc, ok := c.(*watchedConn)
	if !ok {
		return ctx
	}
	ctx, cancel := context.WithCancelCause(ctx)
	context.AfterFunc(wc.ctx, func() { cancel(context.Cause(wc.ctx)) })
	return ctx
}

// startStreaming starts the streaming server unless streaming.address is empty.
func (s *Service) startStreaming() error {
	if s.cfg.Streaming.Address == "" {
		return nil
	}
	srv, err := newStreamServer(s.cfg.Streaming, streamRuntime{s}, s.log)
	if err != nil {
		return err
	}
	s.streaming = srv
	return nil
}

// stopStreaming ends every stream session; the exec'd processes are killed by their shims.
func (s *Service) stopStreaming() {
	if s.streaming != nil {
		if err := s.streaming.Close(); err != nil {
			s.log.Warn("stop streaming server", "err", err)
		}
	}
}
