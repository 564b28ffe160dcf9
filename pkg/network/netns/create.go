package netns

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// hostNameMax is HOST_NAME_MAX; sethostname(2) refuses longer names with EINVAL.
const hostNameMax = 64

// Options selects the namespaces Create makes.
type Options struct {
	Dir           string // each namespace is pinned at Dir/<kind>
	Net, IPC, UTS bool
	Hostname      string // set in the new UTS namespace; needs UTS
	// UserNS, when set, adds a new user namespace (pinned at Dir/user) that owns the other
	// new namespaces.
	UserNS *UserNS
}

// Paths are the pinned namespaces; a kind not requested is "".
type Paths struct{ Net, IPC, UTS, User string }

func (p *Paths) set(k Kind, path string) {
	switch k {
	case KindNet:
		p.Net = path
	case KindIPC:
		p.IPC = path
	case KindUTS:
		p.UTS = path
	case KindUser:
		p.User = path
	}
}

func (o Options) kinds() []Kind {
	var ks []Kind
	if o.Net {
		ks = append(ks, KindNet)
	}
	if o.IPC {
		ks = append(ks, KindIPC)
	}
	if o.UTS {
		ks = append(ks, KindUTS)
	}
	return ks
}

func (o Options) validate() error {
	switch {
	case o.Dir == "" || !filepath.IsAbs(o.Dir):
		return fmt.Errorf("namespace dir %q must be an absolute path: %w", o.Dir, errdefs.ErrInvalidArgument)
	case !o.Net && !o.IPC && !o.UTS:
		return fmt.Errorf("no namespace requested: %w", errdefs.ErrInvalidArgument)
	case o.Hostname != "" && !o.UTS:
		return fmt.Errorf("hostname %q needs a new UTS namespace: %w", o.Hostname, errdefs.ErrInvalidArgument)
	case len(o.Hostname) > hostNameMax:
		return fmt.Errorf("hostname %q is longer than %d bytes: %w", o.Hostname, hostNameMax, errdefs.ErrInvalidArgument)
	case o.UserNS != nil:
		return o.UserNS.validate()
	}
	return nil
}

// Create makes the requested namespaces, sets them up (loopback up, hostname) and pins them
// under opts.Dir. On failure nothing stays pinned.
func Create(opts Options) (Paths, error) {
	if err := opts.validate(); err != nil {
		return Paths{}, fmt.Errorf("create namespaces: %w", err)
	}
	err := os.MkdirAll(opts.Dir, 0o755)
	if err != nil {
		return Paths{}, fmt.Errorf("create namespaces: %w", err)
	}
	if opts.UserNS != nil {
		paths, err := createWithUserNS(opts)
		if err != nil {
			return Paths{}, fmt.Errorf("create namespaces in %s: %w", opts.Dir, err)
		}
		return paths, nil
	}
	var paths Paths
	// The thread is never reused: after unshare it belongs to the new namespaces.
	onThread(func() bool {
		paths, err = createOnThread(opts)
		return false
	})
	if err != nil {
		return Paths{}, fmt.Errorf("create namespaces in %s: %w", opts.Dir, err)
	}
	return paths, nil
}

// createOnThread runs on a locked thread that is discarded afterwards. unshare of net, ipc and uts is allowed in a
// multi-threaded process (unlike CLONE_NEWNS or CLONE_NEWUSER) and affects only this thread.
func createOnThread(opts Options) (Paths, error) {
	kinds := opts.kinds()
	flags := 0
	for _, k := range kinds {
		f, err := k.cloneFlag()
		if err != nil {
			return Paths{}, err
		}
		flags |= f
	}
	if err := unix.Unshare(flags); err != nil {
		return Paths{}, fmt.Errorf("unshare %v: %w", kinds, err)
	}
	if opts.UTS && opts.Hostname != "" {
		if err := unix.Sethostname([]byte(opts.Hostname)); err != nil {
			return Paths{}, fmt.Errorf("set hostname %q: %w", opts.Hostname, err)
		}
	}
	if opts.Net {
		if err := loopbackUp(); err != nil {
			return Paths{}, err
		}
	}
	var paths Paths
	var pinned []string
	tid := unix.Gettid()
	for _, k := range kinds {
		dst := filepath.Join(opts.Dir, string(k))
		src := fmt.Sprintf("/proc/self/task/%d/ns/%s", tid, k)
		if err := pin(src, dst); err != nil {
			for _, p := range pinned {
				_ = Unpin(p)
			}
			return Paths{}, fmt.Errorf("pin %s namespace: %w", k, err)
		}
		pinned = append(pinned, dst)
		paths.set(k, dst)
	}
	return paths, nil
}

// loopbackUp brings lo up in the calling thread's network namespace: a new netns has lo down,
// and pods expect localhost to work before any CNI plugin runs.
func loopbackUp() error {
	// A handle opens its netlink socket in the namespace of the calling thread.
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink handle: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find loopback: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring loopback up: %w", err)
	}
	return nil
}
