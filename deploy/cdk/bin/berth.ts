// The CDK app: one BerthStack. Context (cdk -c KEY=VALUE), read by lib/app.ts:
//   certificateArn  ACM certificate of the HTTPS listener (required)
//   stackName       CloudFormation's stack name (default: BerthStack; the blog's steps read EcsEbsStack)
//   lambdaAsset     folder with the Lambda's `bootstrap` (default: ../../target/lambda/berth-lambda)
//   desiredCount, minCapacity, maxCapacity, natGateways, volumeGiB
//   volumeInitializationRate  MiB/s (100–300) at which a claim's volume restored from a snapshot is initialized
import * as path from "node:path";
import { App } from "aws-cdk-lib";
import { berthApp } from "../lib/app";

berthApp(new App(), path.resolve(__dirname, "../../.."), {
  account: process.env.CDK_DEFAULT_ACCOUNT,
  region: process.env.CDK_DEFAULT_REGION,
});
