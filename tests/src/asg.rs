//! An auto-scaling group on moto, as the Terraform module makes one: its instances
//! exist in moto's EC2 and its Auto Scaling API answers for them.

use aws_sdk_autoscaling::Client;

/// Creates a launch configuration and a group `name` of `n` instances in us-east-1a;
/// returns the instances' ids.
pub async fn create_group(sdk: &aws_config::SdkConfig, name: &str, n: i32) -> Vec<String> {
    let ami = crate::ec2::any_ami(&aws_sdk_ec2::Client::new(sdk)).await;
    let asg = Client::new(sdk);
    asg.create_launch_configuration()
        .launch_configuration_name(format!("{name}-lc"))
        .image_id(ami)
        .instance_type("m5.large")
        .send()
        .await
        .expect("CreateLaunchConfiguration");
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_configuration_name(format!("{name}-lc"))
        .min_size(n)
        .max_size(n)
        .desired_capacity(n)
        .availability_zones("us-east-1a")
        .send()
        .await
        .expect("CreateAutoScalingGroup");
    let groups = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .expect("DescribeAutoScalingGroups");
    groups.auto_scaling_groups()[0]
        .instances()
        .iter()
        .map(|i| i.instance_id().expect("instance id").to_string())
        .collect()
}

/// The instance's group and health status (`HEALTHY`, `UNHEALTHY`), from
/// DescribeAutoScalingInstances.
pub async fn health(sdk: &aws_config::SdkConfig, instance_id: &str) -> (String, String) {
    let out = Client::new(sdk)
        .describe_auto_scaling_instances()
        .instance_ids(instance_id)
        .send()
        .await
        .expect("DescribeAutoScalingInstances");
    let i = &out.auto_scaling_instances()[0];
    (
        i.auto_scaling_group_name().unwrap_or_default().to_string(),
        i.health_status().unwrap_or_default().to_uppercase(),
    )
}
