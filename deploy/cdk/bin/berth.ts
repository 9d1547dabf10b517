// The CDK app: one BerthStack. Context (cdk -c KEY=VALUE):
//   certificateArn  ACM certificate of the HTTPS listener (required)
//   lambdaAsset     folder with the Lambda's `bootstrap` (default: ../../target/lambda/berth-lambda)
//   desiredCount, minCapacity, maxCapacity, natGateways, volumeGiB
import * as path from "node:path";
import { App } from "aws-cdk-lib";
import { BerthStack } from "../lib/berth-stack";

const app = new App();
const context = (key: string): string | undefined => app.node.tryGetContext(key);
const number = (key: string): number | undefined => {
  const value = context(key);
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`context ${key}=${value} is not a whole number`);
  return n;
};
const certificateArn = context("certificateArn");
if (!certificateArn) {
  throw new Error("give the HTTPS listener's certificate: cdk deploy -c certificateArn=arn:aws:acm:…");
}
const root = path.resolve(__dirname, "../../..");
new BerthStack(app, "BerthStack", {
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
  certificateArn,
  lambdaAsset: path.resolve(context("lambdaAsset") ?? path.join(root, "target/lambda/berth-lambda")),
  repositoryRoot: root,
  desiredCount: number("desiredCount"),
  minCapacity: number("minCapacity"),
  maxCapacity: number("maxCapacity"),
  natGateways: number("natGateways"),
  volumeGiB: number("volumeGiB"),
});
