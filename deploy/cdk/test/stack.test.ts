// Synthesizes the stack offline and checks that it is the blog's
// architecture plus berth's controller, with least-privilege IAM.
// Run with `npm test` (node's test runner through tsx).
import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { App } from "aws-cdk-lib";
import { Match, Template } from "aws-cdk-lib/assertions";
import { BerthStack } from "../lib/berth-stack";
import { appSettings, berthApp } from "../lib/app";

const certificateArn = "arn:aws:acm:us-east-1:111111111111:certificate/00000000-0000-0000-0000-000000000000";
const repositoryRoot = path.resolve(__dirname, "../../..");

function placeholderLambda(): string {
  const lambdaAsset = fs.mkdtempSync(path.join(os.tmpdir(), "berth-lambda-"));
  // Synthesis only packages the folder; the real one comes from cargo lambda.
  fs.writeFileSync(path.join(lambdaAsset, "bootstrap"), "#!/bin/sh\nexit 1\n", { mode: 0o755 });
  return lambdaAsset;
}

function synth(overrides: Record<string, unknown> = {}): Template {
  const lambdaAsset = placeholderLambda();
  const app = new App({ outdir: fs.mkdtempSync(path.join(os.tmpdir(), "berth-cdk-")) });
  const stack = new BerthStack(app, "BerthStack", {
    env: { account: "111111111111", region: "us-east-1" },
    certificateArn,
    lambdaAsset,
    repositoryRoot,
    ...overrides,
  });
  return Template.fromStack(stack);
}

// BERTH_CONFIG as the Lambda reads it, with what CloudFormation resolves
// at deploy time (the Fn::Join's references) as "<resolved at deploy>".
function berthConfig(t: Template): any {
  const env = Object.values(t.findResources("AWS::Lambda::Function"))
    .map((f: any) => f.Properties?.Environment?.Variables)
    .find((v: any) => v && v.BERTH_CONFIG);
  assert.ok(env, "a function with BERTH_CONFIG");
  const config = env.BERTH_CONFIG;
  const text =
    typeof config === "string"
      ? config
      : config["Fn::Join"][1].map((part: unknown) => (typeof part === "string" ? part : "<resolved at deploy>")).join(config["Fn::Join"][0]);
  return JSON.parse(text);
}

const template = synth();

test("a VPC over three AZs with public and private /24 subnets", () => {
  const subnets = template.findResources("AWS::EC2::Subnet");
  assert.equal(Object.keys(subnets).length, 6);
  for (const s of Object.values(subnets)) {
    assert.match((s as any).Properties.CidrBlock, /\/24$/);
  }
  template.resourceCountIs("AWS::EC2::NatGateway", 1);
});

test("a cluster with Container Insights and a task definition whose volume is configured at launch", () => {
  template.hasResourceProperties("AWS::ECS::Cluster", {
    ClusterSettings: [{ Name: "containerInsights", Value: "enabled" }],
  });
  template.hasResourceProperties("AWS::ECS::TaskDefinition", {
    Cpu: "256",
    Memory: "512",
    RequiresCompatibilities: ["FARGATE"],
    Volumes: [{ Name: "data", ConfiguredAtLaunch: true }],
    ContainerDefinitions: [
      Match.objectLike({
        MountPoints: [{ ContainerPath: "/data", SourceVolume: "data", ReadOnly: false }],
        PortMappings: [Match.objectLike({ ContainerPort: 5000 })],
        HealthCheck: Match.objectLike({ Interval: 30, Timeout: 5, Retries: 3, StartPeriod: 60 }),
      }),
    ],
  });
});

test("logs are kept one week", () => {
  const groups = template.findResources("AWS::Logs::LogGroup");
  assert.ok(Object.keys(groups).length >= 2);
  for (const g of Object.values(groups)) {
    assert.equal((g as any).Properties.RetentionInDays, 7);
  }
});

test("the ALB redirects HTTP to HTTPS and checks /health on the tasks", () => {
  template.hasResourceProperties("AWS::ElasticLoadBalancingV2::Listener", {
    Port: 80,
    DefaultActions: [
      { Type: "redirect", RedirectConfig: { Protocol: "HTTPS", Port: "443", StatusCode: "HTTP_301" } },
    ],
  });
  template.hasResourceProperties("AWS::ElasticLoadBalancingV2::Listener", {
    Port: 443,
    Protocol: "HTTPS",
    Certificates: [{ CertificateArn: Match.stringLikeRegexp("^arn:aws:acm:") }],
  });
  template.hasResourceProperties("AWS::ElasticLoadBalancingV2::TargetGroup", {
    TargetType: "ip",
    Port: 5000,
    HealthCheckPath: "/health",
    HealthCheckIntervalSeconds: 30,
    HealthCheckTimeoutSeconds: 5,
    HealthyThresholdCount: 2,
    UnhealthyThresholdCount: 3,
    TargetGroupAttributes: Match.arrayWith([{ Key: "deregistration_delay.timeout_seconds", Value: "30" }]),
  });
});

test("task state changes of the cluster reach the Lambda through SQS with a dead-letter queue", () => {
  template.hasResourceProperties("AWS::Events::Rule", {
    EventPattern: {
      source: ["aws.ecs"],
      "detail-type": ["ECS Task State Change"],
      detail: { clusterArn: [Match.anyValue()] },
    },
    Targets: [Match.objectLike({ Arn: { "Fn::GetAtt": [Match.stringLikeRegexp("^Events"), "Arn"] } })],
  });
  template.hasResourceProperties("AWS::SQS::Queue", {
    RedrivePolicy: { maxReceiveCount: 5, deadLetterTargetArn: Match.anyValue() },
  });
  template.hasResourceProperties("AWS::Lambda::EventSourceMapping", {
    FunctionResponseTypes: ["ReportBatchItemFailures"],
  });
  template.hasResourceProperties("AWS::Events::Rule", {
    ScheduleExpression: "rate(1 minute)",
    Targets: [Match.objectLike({ Input: JSON.stringify({ resync: true }) })],
  });
  template.hasResourceProperties("AWS::Lambda::Function", {
    Runtime: "provided.al2023",
    Architectures: ["arm64"],
    Handler: "bootstrap",
  });
});

test("the ledger table has pk/sk, on-demand capacity and TTL", () => {
  template.hasResourceProperties("AWS::DynamoDB::GlobalTable", {
    KeySchema: [
      { AttributeName: "pk", KeyType: "HASH" },
      { AttributeName: "sk", KeyType: "RANGE" },
    ],
    BillingMode: "PAY_PER_REQUEST",
    TimeToLiveSpecification: { AttributeName: "ttl", Enabled: true },
  });
});

test("IAM: no wildcard resource but for actions AWS offers no narrower one", () => {
  // Actions without resource-level permissions, each with a reason in the stack.
  const wildcardOk = new Set([
    "ecs:ListTasks",
    "ec2:DescribeVolumes",
    "ec2:DescribeSnapshots",
    "elasticloadbalancing:DescribeTargetHealth",
    "cloudwatch:GetMetricData",
    // The task execution role pulling the image from ECR (CDK's grant; AWS allows only "*").
    "ecr:GetAuthorizationToken",
    // CDK's own grants on the stack's KMS key policy (Resource "*" there means the key itself).
    "kms:*",
  ]);
  const offenders: string[] = [];
  for (const [id, policy] of Object.entries(template.findResources("AWS::IAM::Policy"))) {
    for (const st of (policy as any).Properties.PolicyDocument.Statement) {
      const resources = [st.Resource].flat();
      if (!resources.includes("*")) continue;
      for (const action of [st.Action].flat()) {
        if (!wildcardOk.has(action)) offenders.push(`${id}: ${action}`);
      }
    }
  }
  assert.deepEqual(offenders, []);
  // RunTask only of the family, on the cluster; EBS snapshots only of berth's claims.
  const statements = Object.values(template.findResources("AWS::IAM::Policy")).flatMap(
    (p: any) => p.Properties.PolicyDocument.Statement,
  );
  const run = statements.find((s: any) => s.Sid === "RunClaimTasks");
  assert.ok(run.Condition.ArnEquals["ecs:cluster"], "RunTask is scoped to the cluster");
  const snap = statements.find((s: any) => s.Sid === "SnapshotClaimVolumes");
  assert.equal(snap.Condition.StringLike["aws:ResourceTag/berth:claim"], "*");
  const pass = statements.find((s: any) => s.Sid === "PassTaskRoles");
  assert.equal([pass.Resource].flat().length, 3);
});

test("encrypted volumes: the ECS infrastructure role and the controller get the KMS grants", () => {
  template.hasResourceProperties("AWS::KMS::Key", { EnableKeyRotation: true });
  template.hasResourceProperties("AWS::IAM::Role", {
    AssumeRolePolicyDocument: Match.objectLike({
      Statement: [Match.objectLike({ Principal: { Service: "ecs.amazonaws.com" } })],
    }),
    ManagedPolicyArns: [Match.objectLike({ "Fn::Join": Match.arrayWith([Match.arrayWith([Match.stringLikeRegexp("AmazonECSInfrastructureRolePolicyForVolumes")])]) })],
  });
});

test("scaling bounds reach the controller's settings, and a missing Lambda package is one clear error", () => {
  const t = synth({ minCapacity: 3, maxCapacity: 6 });
  const fns = t.findResources("AWS::Lambda::Function");
  const env = Object.values(fns)
    .map((f: any) => f.Properties?.Environment?.Variables)
    .find((v: any) => v && v.BERTH_CONFIG);
  const text = JSON.stringify(env.BERTH_CONFIG);
  assert.ok(text.includes('\\"min_capacity\\":3') && text.includes('\\"max_capacity\\":6'), text);
  assert.ok(text.includes('\\"autoscaling\\":[{\\"service\\":\\"files\\"'), text);
  assert.throws(() => synth({ lambdaAsset: "/nonexistent" }), /no Lambda package at \/nonexistent/);
});

test("backups reach the controller, and the replica region its snapshot permissions", () => {
  const t = synth({ backupIntervalMinutes: 15, replicaRegion: "eu-central-1" });
  const fns = t.findResources("AWS::Lambda::Function");
  const env = Object.values(fns)
    .map((f: any) => f.Properties?.Environment?.Variables)
    .find((v: any) => v && v.BERTH_CONFIG);
  const text = JSON.stringify(env.BERTH_CONFIG);
  assert.ok(text.includes('interval\\":900'), text.slice(0, 600));
  assert.ok(text.includes('replica_region\\":\\"eu-central-1'), "the replica region reaches the controller");
  const policies = JSON.stringify(t.findResources("AWS::IAM::Policy"));
  assert.ok(policies.includes(":ec2:eu-central-1::snapshot/*"), "CopySnapshot is allowed in the replica region");
  const off = JSON.stringify(synth({ backupIntervalMinutes: 0 }).findResources("AWS::Lambda::Function"));
  assert.ok(off.includes('backups\\":[]'), "0 turns backups off");
});

test("the controller's settings document names the stack's resources", () => {
  const t = synth({ desiredCount: 3, volumeGiB: 25 });
  const fns = t.findResources("AWS::Lambda::Function");
  const env = Object.values(fns)
    .map((f: any) => f.Properties?.Environment?.Variables)
    .find((v: any) => v && v.BERTH_CONFIG);
  assert.ok(env, "a function with BERTH_CONFIG");
  const text = JSON.stringify(env.BERTH_CONFIG);
  for (const key of ["cluster", "subnets", "security_groups", "target_group_arn", "task_definition_arn", "role_arn", "kms_key_id"]) {
    assert.ok(text.includes(key), `BERTH_CONFIG has ${key}`);
  }
  assert.ok(text.includes('\\"desired_count\\":3') || text.includes('desired_count\\":3'), text.slice(0, 400));
  assert.ok(text.includes('size_gib\\":25'), "volume size reaches the controller");
});

// The task definition in the JSON of ECS's API (RegisterTaskDefinition),
// as `berth up` reads it (`[[service]] task_definition`): CloudFormation's
// property names with a lower-case first letter, the image (an asset
// built at deploy time) as "IMAGE", and what CloudFormation resolves at
// deploy time (roles, the log group) as "<resolved at deploy>". The Rust
// end-to-end test runs this file with a local image; this test keeps it
// equal to what the stack synthesizes (UPDATE_FIXTURES=1 rewrites it).
function apiShape(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(apiShape);
  if (value && typeof value === "object") {
    const keys = Object.keys(value);
    if (keys.length === 1 && (keys[0] === "Ref" || keys[0].startsWith("Fn::"))) return "<resolved at deploy>";
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k.charAt(0).toLowerCase() + k.slice(1), apiShape(v)]),
    );
  }
  return value;
}

test("the task definition in ECS API shape is test/taskdef.json, which berth up runs", () => {
  const [resource] = Object.values(template.findResources("AWS::ECS::TaskDefinition")) as any[];
  const shaped = apiShape(resource.Properties) as any;
  for (const container of shaped.containerDefinitions) container.image = "IMAGE";
  const fixture = path.join(__dirname, "taskdef.json");
  const text = JSON.stringify(shaped, null, 2) + "\n";
  if (process.env.UPDATE_FIXTURES === "1") fs.writeFileSync(fixture, text);
  assert.equal(fs.readFileSync(fixture, "utf8"), text, "run UPDATE_FIXTURES=1 npm test in deploy/cdk");
});

test("the blog's output LoadBalancerDNS is the ALB's DNS name, under that exact name only", () => {
  const outputs = template.toJSON().Outputs as Record<string, any>;
  const dns = Object.keys(outputs).filter((k) => k.toLowerCase() === "loadbalancerdns");
  assert.deepEqual(dns, ["LoadBalancerDNS"], "one output, named as the blog's describe-stacks query reads it");
  const [albId] = Object.keys(template.findResources("AWS::ElasticLoadBalancingV2::LoadBalancer"));
  assert.deepEqual(outputs.LoadBalancerDNS.Value, { "Fn::GetAtt": [albId, "DNSName"] });
});

test("the app names the stack from context stackName, BerthStack by default", () => {
  const context = (values: Record<string, unknown>) => (key: string) => values[key];
  const lambdaAsset = placeholderLambda();
  const named = appSettings(context({ certificateArn, lambdaAsset, stackName: "EcsEbsStack" }), repositoryRoot);
  assert.equal(named.stackName, "EcsEbsStack");
  assert.equal(named.props.stackName, "EcsEbsStack");
  assert.equal(named.props.lambdaAsset, lambdaAsset);
  assert.equal(appSettings(context({ certificateArn }), repositoryRoot).stackName, "BerthStack");
  assert.equal(
    appSettings(context({ certificateArn }), repositoryRoot).props.lambdaAsset,
    path.join(repositoryRoot, "target/lambda/berth-lambda"),
  );
  assert.throws(() => appSettings(context({}), repositoryRoot), /certificateArn/);

  // As bin/berth.ts runs it: `cdk deploy -c stackName=EcsEbsStack -c certificateArn=…`
  // (the CLI hands context values over as strings).
  const app = new App({
    outdir: fs.mkdtempSync(path.join(os.tmpdir(), "berth-cdk-")),
    context: { stackName: "EcsEbsStack", certificateArn, lambdaAsset, volumeInitializationRate: "300" },
  });
  const stack = berthApp(app, repositoryRoot, { account: "111111111111", region: "us-east-1" });
  assert.equal(stack.stackName, "EcsEbsStack");
  const artifact = app.synth().getStackByName("EcsEbsStack");
  assert.equal(artifact.templateFile, "EcsEbsStack.template.json");
  assert.ok(artifact.template.Outputs.LoadBalancerDNS, "the blog's query finds its output in EcsEbsStack");
  assert.equal(berthConfig(Template.fromStack(stack)).volume.initialization_rate, 300);

  const unnamed = new App({ outdir: fs.mkdtempSync(path.join(os.tmpdir(), "berth-cdk-")), context: { certificateArn, lambdaAsset } });
  assert.equal(berthApp(unnamed, repositoryRoot).stackName, "BerthStack");
  const badName = new App({ context: { certificateArn, lambdaAsset, stackName: "Ecs_Ebs" } });
  assert.throws(() => berthApp(badName, repositoryRoot), /Stack name must match/);
  assert.throws(
    () => appSettings(context({ certificateArn, volumeInitializationRate: "150.5" }), repositoryRoot),
    /context volumeInitializationRate=150.5 is not a whole number/,
  );
});

test("the app reads backupIntervalMinutes and replicaRegion from its context", () => {
  const context = (values: Record<string, unknown>) => (key: string) => values[key];
  const props = appSettings(
    context({ certificateArn, backupIntervalMinutes: "15", replicaRegion: "eu-west-1" }),
    repositoryRoot,
  ).props;
  assert.equal(props.backupIntervalMinutes, 15);
  assert.equal(props.replicaRegion, "eu-west-1");
  const unset = appSettings(context({ certificateArn }), repositoryRoot).props;
  assert.equal(unset.backupIntervalMinutes, undefined, "the stack's default (60) applies");
  assert.equal(unset.replicaRegion, undefined);
  assert.throws(
    () => appSettings(context({ certificateArn, replicaRegion: "Europe" }), repositoryRoot),
    /context replicaRegion=Europe is not a region name/,
  );
  assert.throws(
    () => appSettings(context({ certificateArn, backupIntervalMinutes: "1h" }), repositoryRoot),
    /context backupIntervalMinutes=1h is not a whole number/,
  );
});

test("a provisioned volume initialization rate reaches BERTH_CONFIG's volume, and only when set", () => {
  const volume = berthConfig(synth({ volumeInitializationRate: 150 })).volume;
  assert.equal(volume.initialization_rate, 150);
  assert.equal(volume.size_gib, 10);
  const unset = berthConfig(template).volume;
  assert.ok(!("initialization_rate" in unset), JSON.stringify(unset));
  assert.equal(berthConfig(synth({ volumeInitializationRate: 100 })).volume.initialization_rate, 100);
  assert.equal(berthConfig(synth({ volumeInitializationRate: 300 })).volume.initialization_rate, 300);
});

test("a volume initialization rate that is not a whole number in 100–300 MiB/s is refused", () => {
  for (const rate of [99, 301, 150.5, 0, Number.NaN]) {
    assert.throws(
      () => synth({ volumeInitializationRate: rate }),
      (e: Error) => e.message.includes("volumeInitializationRate") && e.message.includes("100–300"),
      `rate ${rate}`,
    );
  }
});
