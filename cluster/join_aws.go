package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// Cloud auto-join on AWS: a retry_join entry
//
//	provider=aws tag_key=K tag_value=V [region=R] [addr_type=private_v4|public_v4] [port=8301]
//
// resolves to the running EC2 instances tagged K=V, at their private (or
// public) IPv4 address and the gossip port. Credentials come from the
// standard AWS chain (on EC2, the instance role, which needs
// ec2:DescribeInstances); the region, when not given, from the environment
// or the instance metadata. endpoint= points the client elsewhere (tests).

// DefaultGossipPort is the gossip port a provider's addresses get unless
// the entry says port=.
const DefaultGossipPort = 8301

// ErrJoinArgs: a retry_join provider entry is malformed.
var ErrJoinArgs = errors.New("cluster: bad retry_join provider arguments")

// awsJoinTimeout bounds one resolution (all pages, with the SDK's retries).
const awsJoinTimeout = 30 * time.Second

func init() { RegisterJoinProvider("aws", awsJoin{}) }

type awsJoin struct{}

type awsJoinArgs struct {
	tagKey, tagValue, region, endpoint string
	public                             bool
	port                               int
}

var awsJoinKeys = []string{"provider", "tag_key", "tag_value", "region", "addr_type", "endpoint", "port"}

func parseAWSJoinArgs(args map[string]string) (awsJoinArgs, error) {
	for k := range args {
		if !slices.Contains(awsJoinKeys, k) {
			return awsJoinArgs{}, fmt.Errorf("%w: provider=aws does not take %q (it takes %s)", ErrJoinArgs, k, strings.Join(awsJoinKeys[1:], ", "))
		}
	}
	a := awsJoinArgs{tagKey: args["tag_key"], tagValue: args["tag_value"], region: args["region"],
		endpoint: args["endpoint"], port: DefaultGossipPort}
	if a.tagKey == "" || a.tagValue == "" {
		return a, fmt.Errorf("%w: provider=aws needs tag_key and tag_value", ErrJoinArgs)
	}
	switch args["addr_type"] {
	case "", "private_v4":
	case "public_v4":
		a.public = true
	default:
		return a, fmt.Errorf("%w: addr_type %q: want private_v4 or public_v4", ErrJoinArgs, args["addr_type"])
	}
	if p, ok := args["port"]; ok {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return a, fmt.Errorf("%w: port %q", ErrJoinArgs, p)
		}
		a.port = n
	}
	return a, nil
}

// Addrs lists host:port of the running instances with the tag, page by page.
func (awsJoin) Addrs(ctx context.Context, args map[string]string) ([]string, error) {
	a, err := parseAWSJoinArgs(args)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, awsJoinTimeout)
	defer cancel()
	opts := []func(*config.LoadOptions) error{config.WithEC2IMDSRegion()}
	if a.region != "" {
		opts = append(opts, config.WithRegion(a.region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("aws config: %w", err)
	}
	client := ec2.NewFromConfig(cfg, func(o *ec2.Options) {
		if a.endpoint != "" {
			o.BaseEndpoint = aws.String(a.endpoint)
		}
	})
	pages := ec2.NewDescribeInstancesPaginator(client, &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: aws.String("tag:" + a.tagKey), Values: []string{a.tagValue}},
		{Name: aws.String("instance-state-name"), Values: []string{"running"}},
	}})
	var out []string
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("ec2 DescribeInstances: %w", err)
		}
		for _, r := range page.Reservations {
			for _, in := range r.Instances {
				ip := aws.ToString(in.PrivateIpAddress)
				if a.public {
					ip = aws.ToString(in.PublicIpAddress)
				}
				if ip == "" {
					continue // e.g. no public address: nothing to dial
				}
				out = append(out, net.JoinHostPort(ip, strconv.Itoa(a.port)))
			}
		}
	}
	return out, nil
}
