"""MJCF builder for the built-in desk arm (SO-100/SO-101 joint layout, primitives only).

The arm stands at the world origin on a table whose top is the plane ``z = 0``; +x points
away from the base into the workspace. Joint chain (all hinges except the fingers):

====  ================  ======  ===========================================
idx   joint             axis    meaning
====  ================  ======  ===========================================
0     shoulder_pan      z       yaw of the whole arm
1     shoulder_lift     y       upper arm pitch (+ leans forward)
2     elbow_flex        y       forearm pitch relative to the upper arm
3     wrist_flex        y       wrist pitch relative to the forearm
4     wrist_roll        tool    rotation about the gripper's approach axis
5     gripper           slide   finger opening (two mirrored fingers, one command)
====  ================  ======  ===========================================

With every joint at zero the arm points straight up. The two finger slide joints are
coupled by an equality constraint (a rack-and-pinion parallel gripper) and driven by one
position actuator on the tendon of their mean travel, so the gripper is one action dimension
and a held cube cannot push the finger pair sideways.

The arm servos are stiff position actuators (``kp``) with a torque limit (``forcerange``)
and passive joint damping ``D`` (implicit in ``implicitfast``), so joint speed saturates at
about ``forcerange / D`` ≈ 1.2-2 rad/s, like a loaded hobby servo: a random policy cannot
fling the cube across the room. Links are gravity compensated; armature models gearing.

The grip is force limited (``GRIP_FORCE`` ≈ 6.6 N per pad when squeezing the cube) and the
pads use ``condim=4`` (sliding + torsional friction, μ = 1.5, elliptic cones, impratio 5), so
a held cube neither slips nor spins; it is held by friction alone (with μ below ~0.04 it
slips out, as Coulomb's law predicts for a 50 g cube) and drops when the gripper opens.
A floor 0.75 m below the table top catches anything knocked off the table.
"""

from __future__ import annotations

import numpy as np

ARM_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")
FINGER_JOINTS = ("finger_left", "finger_right")
JOINT_NAMES = ARM_JOINTS + ("gripper",)

# Joint ranges (rad for the arm, metres of travel per finger for the gripper).
ARM_RANGES = np.array(
    [
        [-2.0, 2.0],  # shoulder_pan
        [-1.8, 1.8],  # shoulder_lift
        [-0.6, 2.8],  # elbow_flex
        [-2.0, 2.0],  # wrist_flex
        [-np.pi, np.pi],  # wrist_roll
    ]
)
GRIPPER_RANGE = np.array([0.0, 0.035])  # per-finger travel: 0 = closed, 0.035 = open
CTRL_RANGES = np.vstack([ARM_RANGES, GRIPPER_RANGE[None]])  # [6, 2] in action order

# Geometry (metres).
SHOULDER_HEIGHT = 0.10
UPPER_ARM = 0.15
FOREARM = 0.15
WRIST_LINK = 0.04
TCP_OFFSET = 0.085  # from the wrist-roll frame to the point between the finger pads
CUBE_HALF = 0.0175  # 3.5 cm cube
CUBE_MASS = 0.05
GRIP_FORCE = 8.0  # N squeeze per finger (actuator force limit)
GRIP_KP = 800.0

TIMESTEP = 0.005
HOME_QPOS = np.array([0.0, -0.3, 1.9, 1.54, 0.0])  # gripper above the workspace, pointing down


def build_xml(timestep: float = TIMESTEP, offwidth: int = 640, offheight: int = 480) -> str:
    """Return the MJCF string of the arm scene (table, arm, cube, target marker, cameras)."""
    r = ARM_RANGES
    g = GRIPPER_RANGE
    return f"""
<mujoco model="reinflow_desk_arm">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{timestep}" integrator="implicitfast" cone="elliptic" impratio="5"/>
  <visual>
    <quality shadowsize="0" offsamples="0"/>
    <global offwidth="{offwidth}" offheight="{offheight}"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.5 0.5 0.5" specular="0 0 0"/>
    <rgba haze="0.15 0.25 0.35 1"/>
  </visual>
  <default>
    <geom contype="2" conaffinity="0" friction="0.8 0.02 0.001" solref="0.01 1"/>
    <joint damping="0.05" armature="0.05"/>
    <default class="visual">
      <geom contype="0" conaffinity="0" group="1"/>
    </default>
    <default class="pad">
      <geom type="box" friction="1.5 0.05 0.005" condim="4" solref="0.01 1"
            solimp="0.95 0.99 0.001" rgba="0.15 0.15 0.15 1"/>
    </default>
  </default>
  <worldbody>
    <light pos="0.3 -0.3 1.2" dir="-0.2 0.2 -1" diffuse="0.5 0.5 0.5"
           castshadow="false"/>
    <geom name="table" type="box" size="0.45 0.45 0.02" pos="0.15 0 -0.02" rgba="0.55 0.42 0.3 1"
          contype="1" conaffinity="3" friction="0.5 0.01 0.001"/>
    <geom name="floor" type="plane" size="2 2 0.1" pos="0 0 -0.75" rgba="0.3 0.3 0.32 1"
          contype="1" conaffinity="3"/>
    <geom name="base" type="cylinder" size="0.05 0.015" pos="0 0 0.015" rgba="0.2 0.2 0.2 1"
          contype="0" conaffinity="0"/>
    <camera name="top" pos="0.42 0 0.42" xyaxes="0 1 0 -0.877 0 0.48" fovy="48"/>
    <body name="pan_link" pos="0 0 0.03" gravcomp="1">
      <joint name="shoulder_pan" damping="2.5" axis="0 0 1" range="{r[0, 0]} {r[0, 1]}"/>
      <geom type="cylinder" size="0.04 0.035" pos="0 0 0.035" rgba="0.95 0.55 0.1 1" mass="0.3"/>
      <body name="upper_arm" pos="0 0 {SHOULDER_HEIGHT - 0.03}" gravcomp="1">
        <joint name="shoulder_lift" damping="2.6" axis="0 1 0" range="{r[1, 0]} {r[1, 1]}"/>
        <geom type="capsule" fromto="0 0 0 0 0 {UPPER_ARM}" size="0.02" rgba="0.95 0.55 0.1 1"
              mass="0.15"/>
        <body name="forearm" pos="0 0 {UPPER_ARM}" gravcomp="1">
          <joint name="elbow_flex" damping="2.3" axis="0 1 0" range="{r[2, 0]} {r[2, 1]}"/>
          <geom type="capsule" fromto="0 0 0 0 0 {FOREARM}" size="0.017" rgba="0.95 0.55 0.1 1"
                mass="0.12"/>
          <body name="wrist" pos="0 0 {FOREARM}" gravcomp="1">
            <joint name="wrist_flex" damping="1.7" axis="0 1 0" range="{r[3, 0]} {r[3, 1]}"/>
            <geom type="capsule" fromto="0 0 0 0 0 {WRIST_LINK}" size="0.015"
                  rgba="0.2 0.2 0.2 1" mass="0.05"/>
            <body name="gripper" pos="0 0 {WRIST_LINK}" gravcomp="1">
              <joint name="wrist_roll" damping="1.25" axis="0 0 1" range="{r[4, 0]} {r[4, 1]}"/>
              <geom name="palm" type="box" size="0.045 0.016 0.01" pos="0 0 0.012"
                    rgba="0.95 0.55 0.1 1" mass="0.06"/>
              <camera name="wrist" pos="0 0.04 0.03" xyaxes="1 0 0 0 -0.809 -0.588" fovy="80"/>
              <site name="tcp" pos="0 0 {TCP_OFFSET}" size="0.004" rgba="1 1 0 0.0" group="3"/>
              <body name="finger_left" pos="0 0 0.022" gravcomp="1">
                <joint name="finger_left" type="slide" axis="1 0 0" range="{g[0]} {g[1]}"
                       damping="2" armature="0.01"/>
                <geom name="pad_left" class="pad" size="0.004 0.012 0.03" pos="0.005 0 0.047"
                      mass="0.02"/>
              </body>
              <body name="finger_right" pos="0 0 0.022" gravcomp="1">
                <joint name="finger_right" type="slide" axis="-1 0 0" range="{g[0]} {g[1]}"
                       damping="2" armature="0.01"/>
                <geom name="pad_right" class="pad" size="0.004 0.012 0.03" pos="-0.005 0 0.047"
                      mass="0.02"/>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>
    <body name="cube" pos="0.2 0 {CUBE_HALF}">
      <freejoint name="cube"/>
      <geom name="cube" type="box" size="{CUBE_HALF} {CUBE_HALF} {CUBE_HALF}" mass="{CUBE_MASS}"
            rgba="0.85 0.1 0.1 1" contype="1" conaffinity="3" condim="4"
            friction="1.0 0.02 0.002"/>
    </body>
    <body name="target" mocap="true" pos="0.2 0.1 0.1">
      <site name="target" type="sphere" size="0.012" rgba="0.1 0.8 0.2 0.6"/>
    </body>
  </worldbody>
  <tendon>
    <fixed name="grip">
      <joint joint="finger_left" coef="0.5"/>
      <joint joint="finger_right" coef="0.5"/>
    </fixed>
  </tendon>
  <equality>
    <joint joint1="finger_right" joint2="finger_left" polycoef="0 1 0 0 0"
           solref="0.005 1" solimp="0.95 0.99 0.001"/>
  </equality>
  <actuator>
    <position name="shoulder_pan" joint="shoulder_pan" kp="30"
              ctrlrange="{r[0, 0]} {r[0, 1]}" forcerange="-5 5"/>
    <position name="shoulder_lift" joint="shoulder_lift" kp="30"
              ctrlrange="{r[1, 0]} {r[1, 1]}" forcerange="-5 5"/>
    <position name="elbow_flex" joint="elbow_flex" kp="25"
              ctrlrange="{r[2, 0]} {r[2, 1]}" forcerange="-4 4"/>
    <position name="wrist_flex" joint="wrist_flex" kp="15"
              ctrlrange="{r[3, 0]} {r[3, 1]}" forcerange="-3 3"/>
    <position name="wrist_roll" joint="wrist_roll" kp="8"
              ctrlrange="{r[4, 0]} {r[4, 1]}" forcerange="-1.5 1.5"/>
    <position name="gripper" tendon="grip" kp="{GRIP_KP}" ctrlrange="{g[0]} {g[1]}"
              forcerange="-{2 * GRIP_FORCE} {2 * GRIP_FORCE}"/>
  </actuator>
</mujoco>
"""


_MODEL_CACHE: dict = {}


def load_model(timestep: float = TIMESTEP):
    """Compile (once per timestep, cached) and return a fresh copy of the MjModel."""
    import copy

    import mujoco

    key = float(timestep)
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = mujoco.MjModel.from_xml_string(build_xml(timestep))
    return copy.copy(_MODEL_CACHE[key])
