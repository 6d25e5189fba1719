// Package deploy holds what runs kvs outside a developer's shell: the
// FROM-scratch Dockerfile, the three-node docker-compose.yml (with a fourth
// node under the "join" profile), and the tests that drive that compose
// cluster with docker itself (stop, kill -9, pause, cut off the network,
// restart a container; add node4, decommission node2, both under writes) to
// show the behaviour users rely on.
//
// The docker tests are behind the "docker" build tag because they need a
// Docker engine and the kvs:dev image; run them with `make test-docker`,
// which builds the static binary and the image first. They only talk to the
// cluster through its ports published on 127.0.0.1.
package deploy
