package server

// ImageStore is what the CRI layer needs of pkg/images. The full interface
// lands with pkg/images' Service (integration in progress).
type ImageStore interface{}
