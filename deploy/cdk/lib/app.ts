// The CDK app's settings from its context (cdk -c KEY=VALUE): the stack's
// name and BerthStack's props. bin/berth.ts calls berthApp; the tests call
// it with a context of their own.

import * as path from "node:path";
import { App, Environment } from "aws-cdk-lib";
import { BerthStack, BerthStackProps } from "./berth-stack";

/** The stack's name when the context gives none. */
export const DEFAULT_STACK_NAME = "BerthStack";

export interface AppSettings {
  /** CloudFormation's stack name, also the stack's construct id (and so its template file, cdk.out/NAME.template.json). */
  stackName: string;
  props: BerthStackProps;
}

/**
 * Reads the app's context: `stackName` (default BerthStack; the blog's
 * validation steps read stack EcsEbsStack), `certificateArn` (required),
 * `lambdaAsset` (default ROOT/target/lambda/berth-lambda), and the whole
 * numbers `desiredCount`, `minCapacity`, `maxCapacity`, `natGateways`,
 * `volumeGiB`, `volumeInitializationRate`, `backupIntervalMinutes` (0 turns
 * scheduled snapshots off), and `replicaRegion` (a region such as eu-west-1).
 */
export function appSettings(
  context: (key: string) => unknown,
  root: string,
  env?: Environment,
): AppSettings {
  const text = (key: string): string | undefined => {
    const value = context(key);
    return value === undefined || value === null ? undefined : String(value);
  };
  const number = (key: string): number | undefined => {
    const value = text(key);
    if (value === undefined) return undefined;
    const n = value.trim() === "" ? NaN : Number(value);
    if (!Number.isInteger(n) || n < 0) throw new Error(`context ${key}=${value} is not a whole number`);
    return n;
  };
  const certificateArn = text("certificateArn");
  if (!certificateArn) {
    throw new Error("give the HTTPS listener's certificate: cdk deploy -c certificateArn=arn:aws:acm:…");
  }
  const stackName = text("stackName") ?? DEFAULT_STACK_NAME;
  const replicaRegion = text("replicaRegion");
  if (replicaRegion !== undefined && !/^[a-z]{2}(-[a-z]+)+-\d$/.test(replicaRegion)) {
    throw new Error(`context replicaRegion=${replicaRegion} is not a region name such as eu-west-1`);
  }
  return {
    stackName,
    props: {
      env,
      stackName,
      certificateArn,
      lambdaAsset: path.resolve(text("lambdaAsset") ?? path.join(root, "target/lambda/berth-lambda")),
      repositoryRoot: root,
      desiredCount: number("desiredCount"),
      minCapacity: number("minCapacity"),
      maxCapacity: number("maxCapacity"),
      natGateways: number("natGateways"),
      volumeGiB: number("volumeGiB"),
      volumeInitializationRate: number("volumeInitializationRate"),
      backupIntervalMinutes: number("backupIntervalMinutes"),
      replicaRegion,
    },
  };
}

/** The app's one stack, named and configured by the app's context. */
export function berthApp(app: App, root: string, env?: Environment): BerthStack {
  const { stackName, props } = appSettings((key) => app.node.tryGetContext(key), root, env);
  // The name is the construct id too: the task definition's family and the
  // template file follow it, so two stacks in one region keep apart.
  return new BerthStack(app, stackName, props);
}
