package server

import (
	"context"
	"encoding/json"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Status reports runtime and network readiness and the runtime handlers.
func (s *Service) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	runtimeReady := &runtimeapi.RuntimeCondition{Type: runtimeapi.RuntimeReady, Status: s.Ready()}
	if !runtimeReady.Status {
		runtimeReady.Reason = "Recovering"
		runtimeReady.Message = "berth is restoring its state after a restart"
	}
	conditions := []*runtimeapi.RuntimeCondition{runtimeReady, s.networkReady()}
	if c := s.hostSec.appArmorCondition(); c != nil {
		conditions = append(conditions, c)
	}
	conditions = append(conditions, s.nodeConditions()...)
	resp := &runtimeapi.StatusResponse{
		Status:          &runtimeapi.RuntimeStatus{Conditions: conditions},
		RuntimeHandlers: s.handlers.status(),
		// Merge and Strict are both honoured (spec.ResolveUser), and ContainerStatus reports
		// the groups the process got.
		Features: &runtimeapi.RuntimeFeatures{SupplementalGroupsPolicy: true},
	}
	if req.GetVerbose() {
		b, _ := json.Marshal(struct {
			Root, State, CgroupDriver, PodCIDR string
		}{s.cfg.Root, s.cfg.State, s.cfg.CgroupDriver, s.podCIDR.Load().(string)})
		resp.Info = map[string]string{"config": string(b)}
	}
	return resp, nil
}
