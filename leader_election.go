package main

import (
	"context"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// leaderElectionID names the lease the replicas compete for.
const leaderElectionID = "psc-operator.policy.podsecurity.dev"

// checkLeaseNamespace makes sure the leader election lease can be written before the manager
// starts. It creates the lease in dry-run mode: that needs no permission beyond the lease
// Role (reading namespaces would), and the API server answers "namespaces not found" for a
// missing namespace where a plain Get could not tell it from a lease not created yet.
func checkLeaseNamespace(ctx context.Context, cfg *rest.Config, namespace, name string) error {
	if namespace == "" {
		return fmt.Errorf("leader election needs a namespace for its lease: pass --leader-election-namespace or set POD_NAMESPACE, or run with --leader-elect=false")
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating a client for the leader election check: %w", err)
	}
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	_, err = cs.CoordinationV1().Leases(namespace).Create(ctx, lease, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	switch {
	case err == nil, apierrors.IsAlreadyExists(err):
		return nil
	case apierrors.IsNotFound(err):
		return fmt.Errorf("leader election: the lease namespace %q does not exist: create it, pass --leader-election-namespace=<existing namespace>, or run a single replica with --leader-elect=false: %w", namespace, err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("leader election: not allowed to create leases in namespace %q (see the leader election Role in config/rbac): %w", namespace, err)
	default:
		return fmt.Errorf("leader election: checking the lease namespace %q: %w", namespace, err)
	}
}
