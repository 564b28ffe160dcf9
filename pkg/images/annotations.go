package images

import "encoding/json"

// manifestAnnotations returns the annotations of the image's manifest: the first blob of the
// record, other than the config, that parses as a manifest of this config. Checkpoint images
// are marked there (CRI-O's io.kubernetes.cri-o.annotations.checkpoint.name, which buildah's
// `config --annotation` writes).
func (s *Service) manifestAnnotations(rec imageRecord) map[string]string {
	for _, d := range rec.Blobs {
		if d == rec.ID {
			continue
		}
		raw, err := s.content.Get(d)
		if err != nil {
			continue
		}
		var m struct {
			Config struct {
				Digest string `json:"digest"`
			} `json:"config"`
			Annotations map[string]string `json:"annotations"`
		}
		if json.Unmarshal(raw, &m) != nil || m.Config.Digest != rec.ID {
			continue
		}
		return m.Annotations
	}
	return nil
}
