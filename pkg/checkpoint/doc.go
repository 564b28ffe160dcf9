// Package checkpoint reads and writes container checkpoint archives in the layout
// that CRI-O, Podman and the kubelet's checkpoint API share, so that checkpointctl
// and other tools understand berth's archives and berth restores theirs:
//
//	checkpoint/       CRIU's image files (dump.log and stats-dump beside them)
//	config.dump       Config: the container's identity, image and CRI metadata (JSON)
//	spec.dump         the container's OCI runtime spec (JSON)
//	status.dump       Status: the container's state when it was checkpointed (JSON)
//	rootfs-diff.tar   the writable layer's files (a plain tar)
//	deleted.files     image files the writable layer deletes (JSON list of paths)
//
// The archive is an uncompressed tar. The package is a leaf: plain Go types, no CRI
// protobufs, no CRIU; pkg/cri fills the metadata and pkg/runtime runs CRIU.
package checkpoint
