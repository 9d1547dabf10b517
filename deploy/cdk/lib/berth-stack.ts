// The AWS stack of berth: the blog's architecture (VPC over three AZs,
// ECS cluster with Container Insights, a Fargate task definition whose EBS
// volume is configured at launch, an ALB redirecting HTTP to HTTPS in
// front of the /health-checked tasks, logs kept one week) and berth's
// controller (EventBridge rule on the cluster's task state changes → SQS
// with a dead-letter queue → the Rust Lambda; a schedule for the periodic
// resync; the DynamoDB ledger), with least-privilege IAM.
//
// Claims run as standalone tasks (RunTask), not as an ECS service: ECS
// deletes a service task's EBS volume when the task stops, and only a
// standalone task's volume can be kept for its stop snapshot
// (deleteOnTermination=false). So there is no ECS service and no service
// auto scaling here; the Lambda registers task IPs with the target group
// and scales claims itself within the bounds passed in its environment.

import * as path from "node:path";
import * as fs from "node:fs";
import { CfnOutput, Duration, RemovalPolicy, Stack, StackProps } from "aws-cdk-lib";
import * as dynamodb from "aws-cdk-lib/aws-dynamodb";
import * as ec2 from "aws-cdk-lib/aws-ec2";
import * as ecs from "aws-cdk-lib/aws-ecs";
import * as elbv2 from "aws-cdk-lib/aws-elasticloadbalancingv2";
import * as events from "aws-cdk-lib/aws-events";
import * as targets from "aws-cdk-lib/aws-events-targets";
import * as iam from "aws-cdk-lib/aws-iam";
import * as kms from "aws-cdk-lib/aws-kms";
import * as lambda from "aws-cdk-lib/aws-lambda";
import * as sources from "aws-cdk-lib/aws-lambda-event-sources";
import * as logs from "aws-cdk-lib/aws-logs";
import * as sqs from "aws-cdk-lib/aws-sqs";

// berth's defaults, each a constant of crates/berth-core/src/defaults.rs;
// a Rust test (crates/berth-core/tests/defaults.rs) keeps this file equal to them.
const defaults = JSON.parse(fs.readFileSync(path.join(__dirname, "defaults.json"), "utf8"));
import { Construct } from "constructs";

export interface BerthStackProps extends StackProps {
  /** ACM certificate for the HTTPS listener (the blog's ALB serves HTTPS). */
  certificateArn: string;
  /** The Lambda's deployment package: a folder with the `bootstrap` binary (cargo lambda build). */
  lambdaAsset: string;
  /** The repository root, the Docker build context of the file service image. */
  repositoryRoot: string;
  /** Claims of the service, and the controller's scaling bounds (the blog's: 2, 2–10). */
  desiredCount?: number;
  minCapacity?: number;
  maxCapacity?: number;
  /** NAT gateways (one is enough for the tasks' egress; the blog's VPC default is one per AZ). */
  natGateways?: number;
  /** Size of each claim's gp3 volume in GiB. */
  volumeGiB?: number;
  /**
   * EBS's provisioned rate for volume initialization, in MiB/s (a whole
   * number, 100–300): a claim's volume restored from a snapshot has every
   * block fetched from S3 within size/rate, instead of at the default,
   * unpredictable rate. Sent with RunTask only for volumes made from a
   * snapshot (`volumeInitializationRate`); billed per GiB initialized.
   * Default: unset, the default rate.
   */
  volumeInitializationRate?: number;
  /** Scheduled EBS snapshot of each running claim this often (default 1 hour; 0 turns backups off). */
  backupIntervalMinutes?: number;
  /** A second region every snapshot is copied to (CopySnapshot) for disaster recovery. */
  replicaRegion?: string;
}

/** The range of `volumeInitializationRate` (MiB/s), per EC2's CreateVolume API reference. */
export const VOLUME_INITIALIZATION_RATES = { min: 100, max: 300 };

export class BerthStack extends Stack {
  constructor(scope: Construct, id: string, props: BerthStackProps) {
    super(scope, id, props);
    const rate = props.volumeInitializationRate;
    const { min, max } = VOLUME_INITIALIZATION_RATES;
    if (rate !== undefined && !(Number.isInteger(rate) && rate >= min && rate <= max)) {
      throw new Error(
        `volumeInitializationRate ${rate} is not a whole number of MiB/s in ${min}–${max} ` +
          "(EBS's provisioned rate for volume initialization)",
      );
    }
    if (!fs.existsSync(path.join(props.lambdaAsset, "bootstrap"))) {
      throw new Error(
        `no Lambda package at ${props.lambdaAsset}/bootstrap: build it with cargo lambda ` +
          "(see the README) or pass -c lambdaAsset=DIR",
      );
    }

    const vpc = new ec2.Vpc(this, "Vpc", {
      maxAzs: 3,
      natGateways: props.natGateways ?? 1,
      subnetConfiguration: [
        { name: "public", subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
        { name: "private", subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 24 },
      ],
    });

    const cluster = new ecs.Cluster(this, "Cluster", {
      vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });

    // Volumes are encrypted with a key of the stack's own.
    const volumeKey = new kms.Key(this, "VolumeKey", {
      description: "berth: encryption of claim volumes and their snapshots",
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // The role ECS uses to create, attach and tag the EBS volumes of RunTask.
    const infrastructureRole = new iam.Role(this, "EcsInfrastructureRole", {
      assumedBy: new iam.ServicePrincipal("ecs.amazonaws.com"),
      managedPolicies: [
        iam.ManagedPolicy.fromAwsManagedPolicyName("service-role/AmazonECSInfrastructureRolePolicyForVolumes"),
      ],
    });
    volumeKey.grant(
      infrastructureRole,
      "kms:CreateGrant",
      "kms:Decrypt",
      "kms:DescribeKey",
      "kms:GenerateDataKeyWithoutPlaintext",
      "kms:ReEncrypt*",
    );

    const logGroup = new logs.LogGroup(this, "TaskLogs", {
      retention: logs.RetentionDays.ONE_WEEK,
      removalPolicy: RemovalPolicy.DESTROY,
    });

    const taskDefinition = new ecs.FargateTaskDefinition(this, "TaskDef", {
      cpu: defaults.task_cpu,
      memoryLimitMiB: defaults.task_memory,
    });
    taskDefinition.addVolume({ name: "data", configuredAtLaunch: true });
    // The container's health check, also told to the controller.
    const healthCommand = ["CMD", "curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:5000/health"];
    const container = taskDefinition.addContainer("files", {
      image: ecs.ContainerImage.fromAsset(props.repositoryRoot, {
        file: "deploy/docker/Dockerfile",
        exclude: ["target", ".git", "bench/out", "deploy/cdk/node_modules", "deploy/cdk/cdk.out"],
      }),
      memoryLimitMiB: defaults.task_memory,
      portMappings: [{ containerPort: 5000 }],
      environment: { STORAGE_PATH: "/data", PORT: "5000" },
      logging: ecs.LogDrivers.awsLogs({ streamPrefix: "berth", logGroup }),
      healthCheck: {
        command: healthCommand,
        interval: Duration.seconds(defaults.health_interval_seconds),
        timeout: Duration.seconds(defaults.health_timeout_seconds),
        retries: defaults.health_retries,
        startPeriod: Duration.seconds(defaults.health_start_period_seconds),
      },
      stopTimeout: Duration.seconds(defaults.stop_timeout_seconds),
    });
    container.addMountPoints({ sourceVolume: "data", containerPath: "/data", readOnly: false });

    // The blog's ALB: HTTP redirects to HTTPS; HTTPS forwards to the tasks.
    const albSg = new ec2.SecurityGroup(this, "AlbSg", { vpc, description: "berth load balancer" });
    albSg.addIngressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(80), "HTTP, redirected to HTTPS");
    albSg.addIngressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), "HTTPS");
    const taskSg = new ec2.SecurityGroup(this, "TaskSg", { vpc, description: "berth tasks" });
    taskSg.addIngressRule(albSg, ec2.Port.tcp(5000), "the load balancer to the file service");

    const alb = new elbv2.ApplicationLoadBalancer(this, "Alb", { vpc, internetFacing: true, securityGroup: albSg });
    alb.addListener("Http", {
      port: 80,
      defaultAction: elbv2.ListenerAction.redirect({ protocol: "HTTPS", port: "443", permanent: true }),
    });
    const targetGroup = new elbv2.ApplicationTargetGroup(this, "Targets", {
      vpc,
      port: 5000,
      protocol: elbv2.ApplicationProtocol.HTTP,
      targetType: elbv2.TargetType.IP,
      deregistrationDelay: Duration.seconds(defaults.deregistration_delay_seconds),
      healthCheck: {
        path: "/health",
        interval: Duration.seconds(defaults.lb_health_interval_seconds),
        timeout: Duration.seconds(defaults.lb_health_timeout_seconds),
        healthyThresholdCount: 2,
        unhealthyThresholdCount: 3,
      },
    });
    alb.addListener("Https", {
      port: 443,
      certificates: [elbv2.ListenerCertificate.fromArn(props.certificateArn)],
      defaultTargetGroups: [targetGroup],
    });

    // The ledger: one table, conditional writes, TTL on idempotency records.
    const table = new dynamodb.TableV2(this, "Ledger", {
      partitionKey: { name: "pk", type: dynamodb.AttributeType.STRING },
      sortKey: { name: "sk", type: dynamodb.AttributeType.STRING },
      billing: dynamodb.Billing.onDemand(),
      timeToLiveAttribute: "ttl",
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // EventBridge → SQS (with a dead-letter queue) → the Lambda.
    const deadLetters = new sqs.Queue(this, "EventsDlq", {
      retentionPeriod: Duration.days(14),
      enforceSSL: true,
    });
    const queue = new sqs.Queue(this, "Events", {
      visibilityTimeout: Duration.minutes(6),
      deadLetterQueue: { queue: deadLetters, maxReceiveCount: 5 },
      enforceSSL: true,
    });
    new events.Rule(this, "TaskStateChanges", {
      description: "ECS task state changes of berth's cluster",
      eventPattern: {
        source: ["aws.ecs"],
        detailType: ["ECS Task State Change"],
        detail: { clusterArn: [cluster.clusterArn] },
      },
      targets: [new targets.SqsQueue(queue)],
    });

    const controller = new lambda.Function(this, "Controller", {
      runtime: lambda.Runtime.PROVIDED_AL2023,
      architecture: lambda.Architecture.ARM_64,
      handler: "bootstrap",
      code: lambda.Code.fromAsset(props.lambdaAsset),
      timeout: Duration.minutes(1),
      memorySize: 256,
      logGroup: new logs.LogGroup(this, "ControllerLogs", {
        retention: logs.RetentionDays.ONE_WEEK,
        removalPolicy: RemovalPolicy.DESTROY,
      }),
      environment: {
        // The settings berth-aws reads (AwsSettings): one JSON document,
        // with the deploy-time values (ARNs, ids) resolved by CloudFormation.
        BERTH_CONFIG: this.toJsonString({
          cluster: cluster.clusterName,
          subnets: vpc.privateSubnets.map((s) => s.subnetId),
          security_groups: [taskSg.securityGroupId],
          container: container.containerName,
          target_group_arn: targetGroup.targetGroupArn,
          task_definition_arn: taskDefinition.taskDefinitionArn,
          volume: {
            name: "data",
            role_arn: infrastructureRole.roleArn,
            size_gib: props.volumeGiB ?? 10,
            volume_type: "gp3",
            encrypted: true,
            kms_key_id: volumeKey.keyArn,
            filesystem_type: "ext4",
            // Only with a rate: without the key, the default hydration.
            ...(rate !== undefined ? { initialization_rate: rate } : {}),
          },
          backups:
            (props.backupIntervalMinutes ?? 60) > 0
              ? [
                  {
                    service: "files",
                    interval: (props.backupIntervalMinutes ?? 60) * 60,
                    retention: { last: 24, daily: 7 },
                    replica_region: props.replicaRegion ?? null,
                    replica_retention: { daily: 30 },
                  },
                ]
              : [],
          // Target tracking on Container Insights' readings (the blog's
          // policy: 2–10 tasks, CPU 70 %, memory 80 %), applied by the
          // resync; ECS service auto scaling cannot track standalone tasks.
          autoscaling: [
            {
              service: "files",
              policy: {
                min_capacity: props.minCapacity ?? defaults.min_capacity,
                max_capacity: props.maxCapacity ?? defaults.max_capacity,
                cpu_target_percent: defaults.cpu_target_percent,
                memory_target_percent: defaults.memory_target_percent,
              },
            },
          ],
          services: [
            {
              name: "files",
              desired_count: props.desiredCount ?? defaults.desired_count,
              definition: {
                family: taskDefinition.family,
                revision: 1,
                command: [],
                env: {},
                port: 5000,
                // The container's health check above, so the controller
                // waits for ECS's HEALTHY (UNKNOWN also means "no check").
                health_check: {
                  probe: { command: healthCommand },
                  interval: defaults.health_interval_seconds,
                  timeout: defaults.health_timeout_seconds,
                  retries: defaults.health_retries,
                  start_period: defaults.health_start_period_seconds,
                },
                stop_timeout: defaults.stop_timeout_seconds,
              },
              retention: { last: 7 },
              lease: 60,
              healthy_reset: defaults.healthy_reset_seconds,
            },
          ],
        }),
        BERTH_TABLE: table.tableName,
      },
    });
    controller.addEventSource(
      new sources.SqsEventSource(queue, { batchSize: 10, reportBatchItemFailures: true }),
    );
    // The periodic resync: level-triggered, so a lost event changes nothing.
    new events.Rule(this, "Resync", {
      description: "berth: reconcile every claim from observed state",
      schedule: events.Schedule.rate(Duration.minutes(1)),
      targets: [new targets.LambdaFunction(controller, { event: events.RuleTargetInput.fromObject({ resync: true }) })],
    });

    // Least privilege for the controller.
    table.grantReadWriteData(controller);
    volumeKey.grant(
      controller,
      "kms:CreateGrant",
      "kms:Decrypt",
      "kms:DescribeKey",
      "kms:GenerateDataKeyWithoutPlaintext",
      "kms:ReEncrypt*",
    );
    const onCluster = { ArnEquals: { "ecs:cluster": cluster.clusterArn } };
    controller.addToRolePolicy(
      new iam.PolicyStatement({
        sid: "RunClaimTasks",
        actions: ["ecs:RunTask"],
        resources: [
          Stack.of(this).formatArn({
            service: "ecs",
            resource: "task-definition",
            resourceName: `${taskDefinition.family}:*`,
          }),
        ],
        conditions: onCluster,
      }),
    );
    controller.addToRolePolicy(
      new iam.PolicyStatement({
        sid: "ManageClaimTasks",
        actions: ["ecs:StopTask", "ecs:DescribeTasks", "ecs:TagResource"],
        resources: [
          Stack.of(this).formatArn({ service: "ecs", resource: "task", resourceName: `${cluster.clusterName}/*` }),
        ],
        conditions: onCluster,
      }),
    );
    controller.addToRolePolicy(
      new iam.PolicyStatement({
        sid: "ListClaimTasks",
        // ListTasks has no resource-level permission: scoped by its cluster condition.
        actions: ["ecs:ListTasks"],
        resources: ["*"],
        conditions: onCluster,
      }),
    );
    controller.addToRolePolicy(
      new iam.PolicyStatement({
        sid: "PassTaskRoles",
        actions: ["iam:PassRole"],
        resources: [
          taskDefinition.taskRole.roleArn,
          taskDefinition.obtainExecutionRole().roleArn,
          infrastructureRole.roleArn,
        ],
      }),
    );
    // Snapshots live in the stack's region and, for the replica's copies
    // (CopySnapshot is called in the destination region), in the replica's.
    const snapshotArns = [Stack.of(this).region, ...(props.replicaRegion ? [props.replicaRegion] : [])].map((region) =>
      Stack.of(this).formatArn({ service: "ec2", resource: "snapshot", resourceName: "*", account: "", region }),
    );
    controller.addToRolePolicy(
      new iam.PolicyStatement({
        sid: "SnapshotClaimVolumes",
        actions: ["ec2:CreateSnapshot", "ec2:DeleteVolume"],
        resources: [Stack.of(this).formatArn({ service: "ec2", resource: "volume", resourceName: "*" })],
        conditions: { StringLike: { "aws:ResourceTag/berth:claim": "*" } },
      }),
    );
    controller.addToRolePolicy(
      new iam.PolicyStatement({
        sid: "MakeClaimSnapshots",
        actions: ["ec2:CreateSnapshot", "ec2:CopySnapshot", "ec2:CreateTags"],
        resources: snapshotArns,
        conditions: { StringLike: { "aws:RequestTag/berth:claim": "*" } },
      }),
    );
    controller.addToRolePolicy(
      new iam.PolicyStatement({
        sid: "DeleteClaimSnapshots",
        actions: ["ec2:DeleteSnapshot"],
        resources: snapshotArns,
        conditions: { StringLike: { "aws:ResourceTag/berth:claim": "*" } },
      }),
    );
    controller.addToRolePolicy(
      new iam.PolicyStatement({
        sid: "DescribeVolumesAndSnapshots",
        // EC2's Describe* actions have no resource-level permissions.
        actions: ["ec2:DescribeVolumes", "ec2:DescribeSnapshots"],
        resources: ["*"],
      }),
    );
    controller.addToRolePolicy(
      new iam.PolicyStatement({
        sid: "RegisterClaimTargets",
        actions: ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"],
        resources: [targetGroup.targetGroupArn],
      }),
    );
    controller.addToRolePolicy(
      new iam.PolicyStatement({
        sid: "ReadTargetHealthAndMetrics",
        // DescribeTargetHealth and GetMetricData have no resource-level permissions.
        actions: ["elasticloadbalancing:DescribeTargetHealth", "cloudwatch:GetMetricData"],
        resources: ["*"],
      }),
    );

    // The blog's validation steps read this output by its exact name
    // (OutputKey==`LoadBalancerDNS`).
    new CfnOutput(this, "LoadBalancerDNS", { value: alb.loadBalancerDnsName });
    new CfnOutput(this, "LedgerTable", { value: table.tableName });
    new CfnOutput(this, "EventQueue", { value: queue.queueUrl });
    new CfnOutput(this, "DeadLetterQueue", { value: deadLetters.queueUrl });
  }
}
